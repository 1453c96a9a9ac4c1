#!/usr/bin/env bash
# Issue 24, part 2: ViTAS superformers trained 10x longer than eval/reproduce/vitas.md's (3,000 steps x 128,
# 6.4 epochs): cyclic vs prefix sharing, identity shifting on/off; then vitas_sharing.py (channel usage, loss
# variance, inherited sub-network kNN). One thread; every run resumes (sslvit pretrain --resume), so re-running
# the script continues where it stopped.
#   bash eval/reproduce/vitas_long.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
R=${R:-runs/vitas_long}
STEPS=${STEPS:-3000}
COMMON=(--set train.max_steps=$STEPS --set optim.warmup_steps=150 --set train.checkpoint_every=500
        --set train.threads=1 --set eval.final_knn=false --set log.progress=false --set log.every=1)
run() {  # name, extra --set pairs
  local name=$1; shift
  if [ -f "$R/$name/DONE" ]; then echo "skip $name (done)"; return; fi
  echo "== $name $(date +%T)"
  OMP_NUM_THREADS=1 $PY -m ssl_vit pretrain --recipe vitas_fmnist --output-dir "$R/$name" --resume \
    "${COMMON[@]}" "$@" > "$R/$name.log" 2>&1
  touch "$R/$name/DONE"
}
mkdir -p "$R"
run super_cyclic --set model.vitas.sharing=cyclic
run super_prefix --set model.vitas.sharing=prefix
run super_cyclic_noshift --set model.vitas.sharing=cyclic --set model.vitas.identity_shifting=false
OMP_NUM_THREADS=1 $PY eval/reproduce/vitas_sharing.py --run prefix="$R/super_prefix" --run cyclic="$R/super_cyclic" \
  --run cyclic_noshift="$R/super_cyclic_noshift" \
  --out eval/reproduce/vitas_long/sharing
