#!/usr/bin/env bash
# The stability study's sweeps (eval/reproduce/stability.md), 300 steps each, in the order they were run.
# Every line is an ordinary, resumable `sslvit sweep`: rerun this script to continue after an interruption
# (finished runs are skipped). Then: python eval/reproduce/stability.py runs/stab300_* --out eval/reproduce/stability
set -euo pipefail
SSLVIT=${SSLVIT:-.venv/bin/sslvit}
LRS=1.5e-3,3e-3,6e-3,1.2e-2,2.4e-2,4.8e-2
S=(--recipe instability_fmnist --set train.max_steps=300 --set log.diag_every=2
   --set eval.max_train=10000 --set eval.max_test=2000 --jobs "${JOBS:-2}" --threads 1)
T=(--set model.patch_embed.frozen=false --set optim.warmup_steps=0)
$SSLVIT sweep "${S[@]}" --grid optim.lr=$LRS --grid model.patch_embed.frozen=false,true --set optim.warmup_steps=0 --seeds 0 --output-dir runs/stab300_w0
$SSLVIT sweep "${S[@]}" --grid optim.lr=$LRS --set model.patch_embed.frozen=false --set optim.warmup_steps=20 --seeds 0 --output-dir runs/stab300_warmup20
$SSLVIT sweep "${S[@]}" --grid optim.lr=$LRS "${T[@]}" --set model.stem=scaled_relu --seeds 0 --output-dir runs/stab300_scaledrelu
$SSLVIT sweep "${S[@]}" --grid optim.lr=$LRS "${T[@]}" --set model.stem=conv --seeds 0 --output-dir runs/stab300_convstem
$SSLVIT sweep "${S[@]}" --grid optim.lr=$LRS "${T[@]}" --set model.qk_norm=true --seeds 0 --output-dir runs/stab300_qknorm
$SSLVIT sweep "${S[@]}" --grid optim.lr=$LRS "${T[@]}" --set optim.patch_embed_lr_mult=0.2 --seeds 0 --output-dir runs/stab300_pelr02
# second seed at the transition (6e-3, 1.2e-2 without warm-up; 2.4e-2, 4.8e-2 with it)
$SSLVIT sweep "${S[@]}" --grid optim.lr=6e-3,1.2e-2 --grid model.patch_embed.frozen=false,true --set optim.warmup_steps=0 --seeds 1 --output-dir runs/stab300_w0_seed1
$SSLVIT sweep "${S[@]}" --grid optim.lr=2.4e-2,4.8e-2 --set model.patch_embed.frozen=false --set optim.warmup_steps=20 --seeds 1 --output-dir runs/stab300_warmup20_seed1
$SSLVIT sweep "${S[@]}" --grid optim.lr=6e-3,1.2e-2 "${T[@]}" --set model.stem=scaled_relu --seeds 1 --output-dir runs/stab300_scaledrelu_seed1
$SSLVIT sweep "${S[@]}" --grid optim.lr=6e-3,1.2e-2 "${T[@]}" --set model.stem=conv --seeds 1 --output-dir runs/stab300_convstem_seed1
$SSLVIT sweep "${S[@]}" --grid optim.lr=6e-3,1.2e-2 "${T[@]}" --set model.qk_norm=true --seeds 1 --output-dir runs/stab300_qknorm_seed1
$SSLVIT sweep "${S[@]}" --grid optim.lr=6e-3,1.2e-2 "${T[@]}" --set optim.patch_embed_lr_mult=0.2 --seeds 1 --output-dir runs/stab300_pelr02_seed1
