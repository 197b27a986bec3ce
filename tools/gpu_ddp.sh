#!/bin/bash
# Measure DDP scaling on a machine with 2+ GPUs and no internet access.
#
#   bash tools/gpu_ddp.sh [EPOCHS]
#
# Needs .whl/ as tools/gpu_phase.sh describes (src.tar and the wheels; no teacher). Generates
# the SYNTHETIC benchmark (1600 pairs), caches it once, then trains the `student` variant for
# EPOCHS (default 6) epochs three times with the same seed:
#   gpu1_b32   1 process,  batch 32             (the reference)
#   gpu2_b16   2 processes, batch 16 per process (same global batch, same steps: the speed-up)
#   gpu2_b32   2 processes, batch 32 per process (global batch 64: the throughput)
# and prints one table (epoch seconds after the first epoch, images/s, final val mAP50) into
# $OUT/ddp.md, with each run's metrics.csv and log beside it.
set -o pipefail
EPOCHS=${1:-6}
OUT=${OUT:?OUT must name the folder that comes back}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 3
mkdir -p /tmp/src && tar -xf .whl/src.tar -C /tmp/src || exit 4
export PYTHONPATH=/tmp/site:/tmp/src PYTHONUNBUFFERED=1
python3 -c "import albumentations, pycocotools" || { echo "a wheel is missing in .whl" >&2; exit 3; }
NGPU=$(python3 -c "import torch; print(torch.cuda.device_count())")
[ "$NGPU" -ge 2 ] || { echo "needs 2 GPUs, found $NGPU" >&2; exit 6; }
cd /tmp/src || exit 4
python3 -m dlrmamba_core.cli data gen --out /tmp/ddp/data --num 1600 --workers 16 \
  --splits train=0.85,val=0.15,test=0 || exit 7
COMMON=(--variant student --data /tmp/ddp/data --data-format synth --epochs "$EPOCHS"
        --warmup-epochs 1 --workers 6 --device cuda --no-progress --val-every "$EPOCHS"
        --cache /tmp/ddp/cache --seed 7)
run() {  # name nproc batch
  local name=$1 nproc=$2 batch=$3
  if [ "$nproc" = 1 ]; then
    python3 -m dlrmamba_core.cli train "${COMMON[@]}" --batch-size "$batch" --out /tmp/ddp/"$name"
  else
    python3 -m torch.distributed.run --standalone --nproc_per_node "$nproc" \
      -m dlrmamba_core.cli train "${COMMON[@]}" --batch-size "$batch" --out /tmp/ddp/"$name"
  fi > /tmp/ddp/"$name".log 2>&1
  echo "$name rc $?"
  mkdir -p "$OUT/$name" && cp /tmp/ddp/"$name"/metrics.csv "$OUT/$name/" 2>/dev/null
  cp /tmp/ddp/"$name".log "$OUT/$name/log.txt"
}
run gpu1_b32 1 32
run gpu2_b16 2 16
run gpu2_b32 2 32
python3 - "$OUT" <<'EOF'
import csv, json, subprocess, sys, pathlib
out = pathlib.Path(sys.argv[1])
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip().splitlines()
rows = []
for name, nproc, batch in (("gpu1_b32", 1, 32), ("gpu2_b16", 2, 16), ("gpu2_b32", 2, 32)):
    p = out / name / "metrics.csv"
    if not p.exists():
        rows.append(f"| `{name}` | {nproc} | {batch} | {nproc * batch} | failed | | | |")
        continue
    h = list(csv.DictReader(p.open()))
    steady = [float(r["epoch_s"]) for r in h[1:]] or [float(h[0]["epoch_s"])]
    ep = sum(steady) / len(steady)
    steps = int(h[0]["step"])
    imgs = steps * nproc * batch
    m = next((r["val_mAP50"] for r in reversed(h) if r.get("val_mAP50")), "")
    rows.append(f"| `{name}` | {nproc} | {batch} | {nproc * batch} | {steps} | {ep:.2f} | "
                f"{imgs / ep:.0f} | {float(m):.1f} |" if m else
                f"| `{name}` | {nproc} | {batch} | {nproc * batch} | {steps} | {ep:.2f} | "
                f"{imgs / ep:.0f} | |")
text = ("| run | processes | batch per process | global batch | steps per epoch | "
        "epoch s (mean after the first) | images/s | val mAP50 (last epoch) |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"GPUs: {', '.join(gpu)}\n")
(out / "ddp.md").write_text(text)
print(text)
EOF
ls -la "$OUT"
