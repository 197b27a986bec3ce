#!/bin/bash
# One time slice of a long training run on a lent GPU machine without internet access; the
# run continues exactly in the next slice (next call, next session) from what this one returns.
#
#   bash tools/gpu_train.sh NAME MINUTES [dlrmamba train args ...]
#
# e.g. bash tools/gpu_train.sh teacher_p5_long 5 --variant teacher_p5 --epochs 120 \
#          --batch-size 64 --warmup-epochs 3 --val-every 5 --workers 12
#
# What must sit in .whl/ (git-ignored, carried to the machine with the working tree):
#   src.tar               optional: the code to run, and the shipped models a run may start
#                         from: `git archive HEAD dlrmamba_core models campaign -o .whl/src.tar` (paths
#                         in the train args are relative to it); without it, the carried
#                         tree's own dlrmamba_core/ and models/
#   *.whl                 the wheels the machine lacks (list and pip command: tools/gpu_phase.sh)
#   NAME.tar.part-*       from the second slice on: the run folder the previous slice returned
#
# The data is the synthetic benchmark of the results page (generator version of the code,
# seed 2026, 2400 / 300 / 500 pairs), generated on the machine by the pipeline's own function.
# Training stops at the first epoch end after MINUTES (`--pause-after-min`), with last.pt
# holding the whole state (model, EMA, optimizer, schedule, data order); the next slice
# resumes it with the same train arguments (they are kept in the run folder and compared).
# When the run has finished its epochs, best.pt is evaluated on the test split.
#
# Output in $OUT (copy it out of the device tool's folder at once): NAME.tar.part-* (the run
# folder: last.pt, best.pt, metrics.csv, curves.png, config.json, train_args.txt, test/),
# NAME.log (this slice's training log), NAME.slice.log (every stage with its time).
set -o pipefail
NAME=${1:?usage: gpu_train.sh NAME MINUTES [train args]}; MIN=${2:?minutes per slice}
shift 2
ORIG=$PWD
OUT=${OUT:?OUT must name the folder that comes back}
# Everything this script prints goes to $OUT as it happens: a call cut short by its time limit
# still brings back how far it got (the first attempt returned nothing: see the [teacher] note).
exec > >(tee -a "$OUT/$NAME.slice.log") 2>&1
stage() { echo "[$(date -u +%T)] $*"; }
stage "start: $(nproc) cores, $(python3 -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")')"
# Several slices may run side by side on one GPU (one call, `&`): the shared set-up (wheels,
# code, data) is done once, by whichever comes first, under a lock.
exec 9>/tmp/gpu_train.lock
command -v flock >/dev/null && flock 9
if [ ! -f /tmp/prepared ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 3
  if [ -f .whl/src.tar ]; then
    mkdir -p /tmp/src && tar -xf .whl/src.tar -C /tmp/src || exit 4
  else  # the carried tree's own code and shipped models
    mkdir -p /tmp/src && cp -r dlrmamba_core models $(ls -d campaign 2>/dev/null) /tmp/src/ || exit 4
  fi
fi
export PYTHONPATH=/tmp/site:/tmp/src PYTHONUNBUFFERED=1
python3 -c "import albumentations, pycocotools" || { echo "a wheel is missing in .whl" >&2; exit 3; }
stage "wheels installed, code unpacked"
cd /tmp/src || exit 4
RUN=/tmp/runs/$NAME
DATA_SIZES=${DATA_SIZES:-2400 300 500}  # train val test (smaller only for a local smoke test)
mkdir -p /tmp/runs
RESUME=()
if ls "$ORIG"/.whl/"$NAME".tar.part-* >/dev/null 2>&1; then
  cat "$ORIG"/.whl/"$NAME".tar.part-* | tar -x -C /tmp/runs \
    || { echo "could not unpack .whl/$NAME.tar.part-*" >&2; exit 5; }
  [ "$(cat "$RUN/train_args.txt")" = "$*" ] || {
    echo "train args differ from the previous slice's: $(cat "$RUN/train_args.txt")" >&2; exit 6; }
  RESUME=(--resume "$RUN/last.pt")
  echo "resuming $RUN/last.pt"
fi
stage "generating the synthetic benchmark"
# A file, not a here-document: the generator's worker processes are spawned and re-import
# the main module by its path (from <stdin> they cannot, and the pool respawns them forever).
cat > /tmp/gen_data.py <<'EOF'
import os
import sys
import time
from pathlib import Path

try:
    from dlrmamba_core.research.pipeline import generate_data
except ImportError:
    from dlrmamba_core.engine.pipeline import generate_data

if __name__ == "__main__":
    t0 = time.monotonic()
    n_train, n_val, n_test = (int(n) for n in sys.argv[1:4])
    workers = min(16, len(os.sched_getaffinity(0)))
    info = generate_data(Path("/tmp/data"), n_train, n_val, n_test, 2026, workers)
    print("data", info, f"{time.monotonic() - t0:.1f} s")
EOF
python3 /tmp/gen_data.py $DATA_SIZES || exit 7
touch /tmp/prepared
flock -u 9 2>/dev/null
mkdir -p "$RUN" && printf '%s' "$*" > "$RUN/train_args.txt"
stage "training (the cache is built first)"
python3 -m dlrmamba_core.cli train --data /tmp/data --out "$RUN" --cache "/tmp/cache/$NAME" \
  --no-progress --pause-after-min "$MIN" "$@" "${RESUME[@]}" 2>&1 | tee "$OUT/$NAME.log" \
  | grep --line-buffered -v "step [0-9]*/[0-9]*, loss"
rc=$?
stage "training ended (rc $rc)"
if [ -f "$RUN/final.pt" ] && [ ! -f "$RUN/test/metrics.json" ]; then
  python3 -m dlrmamba_core.cli eval "$RUN/best.pt" --data /tmp/data --split test \
    --out "$RUN/test" --no-progress 2>&1 | tail -20
fi
tail -5 "$RUN/metrics.csv"
(cd /tmp/runs && tar -cf - "$NAME") | split -b 15M - "$OUT/$NAME.tar.part-"
stage "packed"
ls -la "$OUT"
exit $rc
