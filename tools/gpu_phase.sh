#!/bin/bash
# Run one phase of the training pipeline on a bare GPU machine with no internet access.
#
#   bash tools/gpu_phase.sh A|B|<label> [pipeline args ...]
#
# What must sit in .whl/ (git-ignored, carried to the machine with the working tree):
#   src.tar                     optional: `git archive HEAD dlrmamba_core models campaign -o
#                               .whl/src.tar` (the code to run; without it, the tree's own
#                               dlrmamba_core/, models/ and campaign/, which travel anyway)
#   *.whl                       wheels the machine lacks: pycocotools, and albumentations with
#                               its needs (albucore, pydantic, pydantic_core, annotated_types,
#                               typing_inspection, typing_extensions, simsimd, stringzilla);
#                               `pip download NAME==VERSION --no-deps --only-binary=:all: -d .whl
#                               --python-version <the machine's> --platform manylinux2014_x86_64`;
#                               torch, numpy, scipy and opencv must be there already
#   teacher_best.pt.part-*      phase B only: the teacher of phase A (split in 15 MB parts)
#   need.tar.part-*             optional, any phase: a tar of <run>/best.pt files (e.g. the
#                               best.tar.part-* an earlier call returned), unpacked into the
#                               pipeline folder first, so runs that need those runs can start
#
# Output in $OUT (the device tool brings it back): results.json, logs.tar.gz, pipeline.log,
# runlogs.txt (the runs' own logs), best.tar.part-* (every run's best.pt, 15 MB parts; join with
# `cat best.tar.part-* | tar -x`) and, after phase A, teacher_best.pt.part-*.
#
# Copy what comes back out of the device tool's folder at once: the folders are numbered per
# call and a later call (also of a later session) may reuse the number and replace them.
#
# PIPE_LIMIT_S (default 540) bounds the pipeline so the packing above always runs inside a
# 600 s device call; pass --deadline-min a little below it so training ends in time for the
# evaluation, and keep --stall-min (default 6) so a hung run cannot eat the call.
set -o pipefail
PH=${1:?usage: gpu_phase.sh A|B [pipeline args]}; shift
ORIG=$PWD
OUT=${OUT:?OUT must name the folder that comes back}
if ls .whl/*.whl >/dev/null 2>&1; then  # none: the machine has every package already
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 3
fi
# The code: src.tar when given (a fixed commit), else the carried tree's own (committed or
# not) with the shipped models and the campaign's kept ones (a run's --init or teacher file,
# e.g. models/dlrmamba_teacher.onnx or campaign/teacher_long.pt)
if [ -f .whl/src.tar ]; then
  mkdir -p /tmp/src && tar -xf .whl/src.tar -C /tmp/src || exit 4
else
  mkdir -p /tmp/src && cp -r dlrmamba_core models $(ls -d campaign 2>/dev/null) /tmp/src/ || exit 4
fi
export PYTHONPATH=/tmp/site:/tmp/src PYTHONUNBUFFERED=1
# Fail in seconds, not after the data generation, when a training dependency is missing.
python3 -c "import albumentations, pycocotools, onnx, yaml" || { echo "a wheel is missing in .whl" >&2; exit 3; }
export DLRMAMBA_STACK_DUMP_S=${DLRMAMBA_STACK_DUMP_S:-0}
cd /tmp/src || exit 4
if ls "$ORIG"/.whl/need.tar.part-* >/dev/null 2>&1; then
  mkdir -p /tmp/pipe && cat "$ORIG"/.whl/need.tar.part-* | tar -x -C /tmp/pipe \
    || { echo "could not unpack .whl/need.tar.part-*" >&2; exit 5; }
  (cd /tmp/pipe && ls */best.pt */*/best.pt 2>/dev/null) > /tmp/needs.txt
  echo "unpacked needs: $(tr '\n' ' ' < /tmp/needs.txt)"
fi
touch /tmp/needs.txt
if [ "$PH" = B ]; then
  mkdir -p /tmp/pipe/teacher && cat "$ORIG"/.whl/teacher_best.pt.part-* > /tmp/pipe/teacher/best.pt \
    || { echo "phase B needs .whl/teacher_best.pt.part-*" >&2; exit 5; }
fi
timeout -s INT "${PIPE_LIMIT_S:-540}" python3 -m dlrmamba_core.research.pipeline --out /tmp/pipe \
  --n-train 2400 --n-val 300 --n-test 500 "$@" --pack /tmp/pack 2>&1 \
  | tee "$OUT/pipeline.log" | grep -v "^INFO dlrmamba_core.engine.trainer" | grep -v "start "
rc=$?
cp /tmp/pack/results.json /tmp/pack/logs.tar.gz "$OUT"/ 2>/dev/null
for f in /tmp/pipe/*/log.txt; do
  echo "== $f"; grep -v "^INFO dlrmamba_core.engine.trainer" "$f" | tail -80
done > "$OUT/runlogs.txt"
# Every best.pt this call made (not the ones it was given), phase A's teacher apart.
# PACK_DISTILL_STAGE=0 leaves out the distillation stage's best.pt of distill runs (their
# fine-tuned finetune/best.pt is the run's model), when what comes back must stay small.
# PACK_SKIP (an extended regex) leaves out the best.pt paths it matches, e.g. '_seed[0-9]+/'
# (the repeats' metrics are in results.json). PACK_SKIP_RUNS names a file of run names (one a
# line) whose models came back already (tools/gpu_campaign.sh's watch calls).
cd /tmp/pipe && ls */best.pt */*/best.pt 2>/dev/null | grep -v "^teacher/best.pt" \
  | grep -v -x -F -f /tmp/needs.txt \
  | { if [ "${PACK_DISTILL_STAGE:-1}" = 0 ]; then grep -v "/distill/best.pt$"; else cat; fi; } \
  | { if [ -n "${PACK_SKIP:-}" ]; then grep -v -E "$PACK_SKIP"; else cat; fi; } \
  | { if [ -s "${PACK_SKIP_RUNS:-}" ]; then grep -v -E "^($(paste -sd'|' "$PACK_SKIP_RUNS"))/"; else cat; fi; } \
  | tar -cf - -T - | split -b 15M - "$OUT/best.tar.part-"
if [ "$PH" = A ] && [ -f /tmp/pipe/teacher/best.pt ]; then
  split -b 15M /tmp/pipe/teacher/best.pt "$OUT/teacher_best.pt.part-"
fi
grep -h "schedule set\|budget of" /tmp/pipe/*/log.txt /tmp/pipe/*/*/log.txt 2>/dev/null \
  | sed 's/INFO dlrmamba_core.engine.trainer: //' | head -30
ls -la "$OUT"
exit $rc
