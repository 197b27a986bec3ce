#!/bin/bash
# A training campaign that outlives one device call: the whole ~27 minutes a session's GPU
# machine can be held, instead of one 10-minute call.
#
# The device tool kills what a call leaves running, except a process that started its own
# session (setsid); such a process runs on until the machine goes back, and a warm machine
# goes back when no call comes within its idle time (30 s on nvidia-h200). So: call 1 starts
# the pipeline detached and returns; each next call is made as soon as the last one returned
# and waits while the runs train; the last call packs what the runs made into $OUT.
#
#   call 1:   bash tools/gpu_campaign.sh start [gpu_phase.sh args: label, pipeline args ...]
#   call 2..: bash tools/gpu_campaign.sh watch SECONDS     (at most ~580 in a 600 s call)
#             (also brings back the best.pt of each run that finished since the last call;
#             when the pipeline ends during the call, everything `finish` brings back)
#   last:     bash tools/gpu_campaign.sh finish            (waits for the pipeline's end)
#
# e.g. (phase T of research/runs.yaml, the [teacher] issue's first session):
#   PIPE_LIMIT_S=1380 bash tools/gpu_campaign.sh start T --deadline-min 21 \
#     --only teacher_p5_long t_task t_sad t_task_seed2 t_sad_seed2 t_task_seed3 t_sad_seed3 \
#     --phase-a-min 10 --phase-b-min 9 --parallel 6 --workers 2 --batch-size 32
#
# What .whl/ must hold, and what comes back, are gpu_phase.sh's (read it): this script runs
# it with OUT=/tmp/campaign/out and PIPE_LIMIT_S (seconds, default 1380) as the bound of the
# whole pipeline, evaluation included; `finish` copies that folder to the call's $OUT. Plan
# the deadline so the pipeline ends before the machine is held 30 minutes (it goes back then,
# with everything on it): machine start (1-3 min) + PIPE_LIMIT_S + packing < 29 min.
# Before call 1: `bash tools/carry_size.sh .whl` (the device tool refuses a call whose tree and
# carried paths pass 64 MiB). Make each next call at once: a reply that takes longer than the
# idle window (30 s) finds a fresh machine, and the runs still training are lost (2026-12-06:
# `finish` came 62 s after `watch` returned; six runs were trained again in one gpu_phase.sh
# call). A `watch` that sees the pipeline end brings back what `finish` would.
set -o pipefail
CMD=${1:?usage: gpu_campaign.sh start|watch|finish ...}; shift
# The campaign's own folder and the pipeline's output folder (gpu_phase.sh's); other paths only
# for the script's tests.
C=${CAMPAIGN_DIR:-/tmp/campaign}
P=${CAMPAIGN_PIPE:-/tmp/pipe}
OUT=${OUT:?OUT must name the folder that comes back}

progress() {  # one line per run: its last epoch line; then the pipeline's last lines
  for f in $P/*/log.txt $P/*/*/log.txt; do
    [ -f "$f" ] || continue
    echo "$f: $(grep -a "epoch" "$f" | tail -1 | cut -c1-200)"
  done
  [ -f $C/phase.log ] && tail -n "${1:-15}" $C/phase.log
  [ -f $C/rc ] && echo "pipeline finished: rc $(cat $C/rc)"
  echo "[$(date -u +%T)] $(( ($(date +%s) - $(cat $C/t0 2>/dev/null || date +%s)) / 60 )) min since start"
}

finished() {  # the pipeline ended: bring back what it packed (what `finish` returns)
  # At most 8 files come back: results.json, the best.pt parts, and every log in one archive
  # (not the pipeline's models_fp16.tar: the best.pt parts hold those models in fp32).
  cp $C/out/results.json $C/out/best.tar.part-* $C/out/teacher_best.pt.part-* "$OUT"/ 2>/dev/null
  (cd $C/out && cp $C/phase.log . && tar -czf "$OUT/campaign_logs.tar.gz" \
    $(ls | grep -v -e "^results.json$" -e "part-" -e "^models_fp16.tar$"))
  [ "$(ls "$OUT" | wc -l)" -le 8 ] || echo "WARNING: more than 8 files in \$OUT: some will not come back" >&2
  ls -la "$OUT"
  exit "$(cat $C/rc)"
}

case $CMD in
start)
  [ -d $C ] && { echo "a campaign already ran on this machine ($C): watch or finish it" >&2; exit 2; }
  mkdir -p $C/out && date +%s > $C/t0
  printf '%q ' "$@" > $C/args
  # The pipeline's own bound: gpu_phase.sh stops it (SIGINT: the runs save and the evaluation
  # of what exists still runs) after PIPE_LIMIT_S, then packs.
  setsid bash -c "cd '$PWD' && OUT=$C/out PIPE_LIMIT_S=${PIPE_LIMIT_S:-1380} PACK_DISTILL_STAGE=0 PACK_SKIP='${PACK_SKIP:-}' PACK_SKIP_RUNS=$C/returned.txt \
    bash tools/gpu_phase.sh $(cat $C/args) > $C/phase.log 2>&1; echo \$? > $C/rc" \
    < /dev/null > /dev/null 2>&1 &
  sleep "${START_WAIT_S:-90}"
  progress 40
  cp $C/phase.log "$OUT/phase_start.log" 2>/dev/null
  ;;
watch)
  [ -d $C ] || { echo "no campaign on this machine (it went back?): start one" >&2; exit 2; }
  end=$((SECONDS + ${1:-540}))
  while [ $SECONDS -lt $end ] && [ ! -f $C/rc ]; do sleep 10; done
  progress 15 | tee "$OUT/progress.txt"
  # Ended while this call waited: this call brings back what `finish` would (the pipeline's
  # packing left out the runs earlier calls returned), so no later call is needed.
  [ -f $C/rc ] && finished
  # The models of the runs that finished since the last call come back now (a machine taken
  # back, or a missed idle window, then loses only the runs still training): the best.pt
  # files of each finished run (summary.json written) with its logs and metrics.csv (its test
  # metrics can then be computed where they land), at most ~60 MB a call, in 15 MB parts.
  # Where they land: unpack them into a folder, link the benchmark there as data/, and run
  #   python -m dlrmamba_core.research.pipeline --out FOLDER --evaluate-only --device cpu \
  #     --trained-on "NVIDIA H100 80GB HBM3" [the start call's pipeline args]
  # for the results.json the lost `finish` would have brought (without the distill stages'
  # models, which stay behind).
  touch $C/returned.txt
  (cd $P 2>/dev/null && for d in */; do
     d=${d%/}; [ -f "$d/summary.json" ] || continue
     grep -q -x -F "$d" $C/returned.txt && continue
     echo "$d"
   done) > $C/new.txt
  size=0; : > $C/take.txt
  while read -r d; do  # a run's files go whole or wait for the next call
    (cd $P && ls "$d"/best.pt "$d"/*/best.pt "$d"/summary.json "$d"/metrics.csv \
       "$d"/*/metrics.csv "$d"/log.txt "$d"/*/log.txt 2>/dev/null | grep -v "/distill/best.pt$") > $C/run.txt
    n=$(cd $P && cat $C/run.txt | xargs stat -c %s | awk '{s += $1} END {print s + 0}')
    [ $((size + n)) -gt 60000000 ] && break
    size=$((size + n)); cat $C/run.txt >> $C/take.txt
  done < $C/new.txt
  if [ -s $C/take.txt ]; then
    tag=$(date -u +%H%M%S)
    (cd $P && tar -cf - -T $C/take.txt) | split -b 15M - "$OUT/done_$tag.tar.part-"
    cut -d/ -f1 $C/take.txt | sort -u >> $C/returned.txt
    echo "returned now: $(tr '\n' ' ' < $C/take.txt) (join: cat done_$tag.tar.part-* | tar -x)"
  fi
  ;;
finish)
  [ -d $C ] || { echo "no campaign on this machine (it went back?)" >&2; exit 2; }
  end=$((SECONDS + ${1:-570}))
  while [ $SECONDS -lt $end ] && [ ! -f $C/rc ]; do sleep 5; done
  progress 30
  [ -f $C/rc ] || { echo "the pipeline is still running: call finish again" >&2; exit 3; }
  finished
  ;;
*)
  echo "unknown command $CMD: start, watch or finish" >&2; exit 2 ;;
esac
