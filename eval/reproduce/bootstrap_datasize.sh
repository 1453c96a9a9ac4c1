#!/usr/bin/env bash
# Issue 24, part 1: the bootstrapped ViT (Zhang et al., CVPR 2022) vs data size on Fashion-MNIST.
# Scratch vs shared vs joint, 200 epochs at each size, the authors' full 3x3 agent kernel (72-d, 9 heads),
# everything else as recipes/bootstrap_fmnist10.yaml. One thread, one arm at a time; resumable in chunks:
# a (size, seed) whose summary.json exists is skipped, so re-running the script continues where it stopped.
#   bash eval/reproduce/bootstrap_datasize.sh            # all chunks, in the order below
#   python eval/reproduce/bootstrap_datasize.py           # table + plot from what has finished
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/bootstrap_size}
OUT=eval/reproduce/bootstrap/datasize
# size:seed, cheapest first: 1 % x 3 seeds, 2 % and 5 % seed 0, then 2 % seeds 1 and 2
CHUNKS=${CHUNKS:-"600:0 600:1 600:2 1200:0 3000:0 1200:1 1200:2"}
for chunk in $CHUNKS; do
  n=${chunk%%:*}; seed=${chunk##*:}
  steps=$(( (n * 200 + 127) / 128 ))        # 200 epochs at batch 128
  warm=$(( steps / 25 ))                     # 4 % warm-up, as the 150-epoch 10 % run (300 of 7031)
  dest="$OUT/n${n}_s${seed}"
  if [ -f "$dest/summary.json" ]; then echo "skip n=$n seed=$seed (done)"; continue; fi
  echo "== n=$n seed=$seed: $steps steps, warm-up $warm"
  OMP_NUM_THREADS=1 $PY eval/reproduce/bootstrap.py --arms scratch,shared,joint --sequential \
    --set "data.dataset=fmnist?subset=${n}&subset_seed=0" --set seed=$seed \
    --set model.embed_dim=72 --set model.num_heads=9 --set train.max_steps=$steps \
    --set optim.warmup_steps=$warm --set train.checkpoint_every=1000 --set log.diag_every=1000 \
    --runs "$RUNS/n${n}_s${seed}" --out "$dest" \
    || { rm -f "$dest/summary.json"; echo "chunk n=$n seed=$seed failed; fix and re-run" >&2; exit 1; }
done
