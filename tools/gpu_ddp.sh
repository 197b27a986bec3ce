#!/bin/bash
# Measure DDP scaling at 1, 2, 4 and 8 GPUs (those the machine has) with no internet access.
#
#   bash tools/gpu_ddp.sh [EPOCHS] [VARIANT] [BATCH_PER_GPU] [TARGET_MAP50]
#
# Defaults: 12 epochs, the `teacher` variant, batch 32 per GPU, target val mAP50 20.
# Needs .whl/ as tools/gpu_phase.sh describes (the wheels, src.tar optional; no checkpoint).
# Generates the SYNTHETIC benchmark (4000 pairs: 3400 train, 600 val), caches it once at
# 256x320, then trains VARIANT for EPOCHS epochs once per GPU count N with the same seed and
# the SAME BATCH PER GPU (global batch N x BATCH_PER_GPU; the learning rate scaled linearly
# with N from 0.01, warmup 1 epoch: the usual rule when the global batch grows), validating
# every epoch. Each run's metrics.csv records epoch seconds and the data-loader wait.
#
# $OUT/ddp.md gets one table: images/s (epochs after the first), scaling efficiency
# (images/s at N / (N x images/s at 1)), the loader-wait share of the epoch time, the training
# seconds until val mAP50 first reaches TARGET_MAP50, and the last val mAP50; each run's
# metrics.csv and log come back beside it.
set -o pipefail
EPOCHS=${1:-12}
VARIANT=${2:-teacher}
BATCH=${3:-32}
TARGET=${4:-20}
OUT=${OUT:?OUT must name the folder that comes back}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 3
if [ -f .whl/src.tar ]; then
  mkdir -p /tmp/src && tar -xf .whl/src.tar -C /tmp/src || exit 4
else  # the carried tree's own code and shipped models
  mkdir -p /tmp/src && cp -r dlrmamba_core models $(ls -d campaign 2>/dev/null) /tmp/src/ || exit 4
fi
export PYTHONPATH=/tmp/site:/tmp/src PYTHONUNBUFFERED=1
python3 -c "import albumentations, pycocotools" || { echo "a wheel is missing in .whl" >&2; exit 3; }
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())")
[ "$NGPU" -ge 1 ] || { echo "needs a GPU, found none" >&2; exit 6; }
CPUS=$(nproc)
cd /tmp/src || exit 4
python3 -m dlrmamba_core.cli data gen --out /tmp/ddp/data --num 4000 --workers "$CPUS" \
  --splits train=0.85,val=0.15,test=0 || exit 7
COUNTS=()
for n in 1 2 4 8; do [ "$n" -le "$NGPU" ] && COUNTS+=("$n"); done
for n in "${COUNTS[@]}"; do
  name=gpu${n}
  # Loader workers: the host's cores shared by the ranks (at most 8 per rank).
  workers=$(( CPUS / n > 8 ? 8 : (CPUS / n > 1 ? CPUS / n - 1 : 1) ))
  lr=$(python3 -c "print(0.01 * $n)")
  args=(--variant "$VARIANT" --data /tmp/ddp/data --data-format synth --epochs "$EPOCHS"
        --warmup-epochs 1 --workers "$workers" --device cuda --no-progress --val-every 1
        --cache /tmp/ddp/cache --seed 7 --batch-size "$BATCH" --lr "$lr" --out /tmp/ddp/"$name")
  t0=$(date +%s)
  if [ "$n" = 1 ]; then
    python3 -m dlrmamba_core.cli train "${args[@]}"
  else
    python3 -m torch.distributed.run --standalone --nproc_per_node "$n" \
      -m dlrmamba_core.cli train "${args[@]}"
  fi > /tmp/ddp/"$name".log 2>&1
  echo "$name rc $? in $(( $(date +%s) - t0 )) s (workers $workers per rank, lr $lr)"
  mkdir -p "$OUT/$name" && cp /tmp/ddp/"$name"/metrics.csv "$OUT/$name/" 2>/dev/null
  cp /tmp/ddp/"$name".log "$OUT/$name/log.txt"
done
python3 - "$OUT" "$BATCH" "$TARGET" "$VARIANT" "${COUNTS[@]}" <<'EOF'
import csv, subprocess, sys, pathlib
out, batch, target, variant = pathlib.Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
counts = [int(n) for n in sys.argv[5:]]
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip().splitlines()
rows, base = [], None
for n in counts:
    p = out / f"gpu{n}" / "metrics.csv"
    if not p.exists():
        rows.append(f"| {n} | {n * batch} | failed | | | | | |")
        continue
    h = list(csv.DictReader(p.open()))
    steps = int(h[0]["step"])
    steady = h[1:] or h
    ep = sum(float(r["epoch_s"]) for r in steady) / len(steady)
    wait = sum(float(r.get("data_wait_s") or 0) for r in steady) / len(steady)
    ips = steps * n * batch / ep
    base = ips if n == 1 else base
    eff = f"{ips / (n * base):.2f}" if base else ""
    t, reach = 0.0, ""
    for r in h:
        t += float(r["epoch_s"])
        if r.get("val_mAP50") and float(r["val_mAP50"]) >= target:
            reach = f"{t:.0f}"
            break
    last = next((r["val_mAP50"] for r in reversed(h) if r.get("val_mAP50")), "")
    last = f"{float(last):.1f}" if last else ""
    rows.append(f"| {n} | {n * batch} | {steps} | {ep:.2f} | {ips:.0f} | {eff} | "
                f"{100 * wait / ep:.0f} % | {reach or 'not reached'} | {last} |")
text = (f"`{variant}`, batch {batch} per GPU, learning rate 0.01 x GPUs.\n\n"
        "| GPUs | global batch | steps per epoch | epoch s (after the first) | images/s | "
        f"scaling efficiency | loader wait | train s to val mAP50 >= {target:g} | "
        "val mAP50 (last) |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        + "\n".join(rows) + f"\n\nGPUs: {', '.join(gpu)}\n")
(out / "ddp.md").write_text(text)
print(text)
EOF
ls -la "$OUT"
