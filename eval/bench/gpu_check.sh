#!/usr/bin/env bash
# The GPU check of issue 21, for a bare CUDA machine without network; finishes in under 10 minutes.
#
#   bash eval/bench/gpu_check.sh OUT_DIR            # on the GPU machine, from anywhere
#   SSLVIT_GPU_CHECK_DRY=1 bash eval/bench/gpu_check.sh /tmp/gc   # here, on a CPU: the same steps, tiny sizes
#
# Steps (each one's failure is recorded and the next still runs; OUT_DIR/summary.txt at the end):
#   env        python / package versions (torch, torchvision, timm, lightly, faiss, ...), nvidia-smi, bf16
#   wheels     every wheel carried in .whl/ whose package is missing here, or here at another version, is
#              installed into $SSLVIT_SITE (--no-index --no-deps) and put first on PYTHONPATH
#   import     ssl_vit and what it imports
#   data       Fashion-MNIST from $SSLVIT_GPU_DATA, data/fashion-mnist or /usr/share/datasets/fashion-mnist;
#              else a synthetic folder in the same IDX format (tests/conftest.py make_fmnist)
#   pytest     the CUDA-marked tests (pytest -m cuda)
#   bench      eval/bench/bench_step.py on CUDA at ViT-S/16, 224 px, B256, bf16, eager (MFU against the bf16
#              GEMM peak measured on the GPU in the same run)
#   pretrain   a 50-step `sslvit pretrain` (fmnist_vit_tiny) on CUDA, its final kNN on CUDA too
#   eval       eval/bench/bench_eval.py on CUDA (feature extraction; kNN search on the CPU)
#   attention  eval/bench/bench_attention.py on CUDA (SDPA vs plain, bf16; the plan assumes SDPA on GPUs)
#   compile    bench_step.py again with --compile (eager and compiled side by side), in the time left
#
# What the machine must have: python3 with torch (CUDA) and torchvision; the rest can be carried. Prepare here:
#   mkdir -p .whl && python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl lightly==1.6.0 faiss-cpu==1.15.1 timm==1.0.31
#   (optional, 30 MB) mkdir -p data && cp -r /usr/share/datasets/fashion-mnist data/
# and carry .whl (and data) with the working tree (both are gitignored). Figures land in OUT_DIR:
# summary.txt, gpu_check.log, bench_step_cuda.json, bench_step_cuda_compile.json, bench_eval_cuda.json,
# bench_attention_cuda.json, pretrain_metrics.jsonl (at most 8 files).
set -u
OUT=${1:?usage: bash eval/bench/gpu_check.sh OUT_DIR}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${PYTHON:-python3}
WHL=${SSLVIT_WHEELS:-$REPO/.whl}
SITE=${SSLVIT_SITE:-/tmp/sslvit_site}
BUDGET=${SSLVIT_GPU_CHECK_BUDGET:-570}           # seconds for the whole check
DRY=${SSLVIT_GPU_CHECK_DRY:-0}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu_check.log
SUM=$OUT/summary.txt
T0=$(date +%s)
DEADLINE=$((T0 + BUDGET))
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
cd "$REPO" || exit 1
: >"$LOG"
printf 'gpu_check %s  repo %s  commit %s  dry=%s\n' "$(date -u +%FT%TZ)" "$REPO" \
  "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')" "$DRY" | tee "$SUM"

if [ "$DRY" = 1 ]; then          # CPU rehearsal: same steps and files, tiny sizes
  DEV=cpu; BENCH=(--models 64x2x2 --img-sizes 32 --patch 8 --batches 32 --rounds 1 --threads 1)
  EVAL_N=1000; PRETRAIN=(--recipe smoke --set train.max_steps=5); ATTN=(--tokens 65 --heads 2 --rows 4096 --repeats 2)
else
  DEV=cuda; BENCH=(--models 384x12x6 --img-sizes 224 --patch 16 --batches 256 --rounds 3 --per-round 3 --ref-workers 8)
  EVAL_N=10000; PRETRAIN=(--recipe fmnist_vit_tiny --set train.max_steps=50)
  ATTN=(--tokens 65,197,257 --heads 6,12 --rows 131072 --repeats 5)
fi

# step NAME LIMIT CMD...: run CMD with a time limit (never past the deadline), log it, one summary line.
step() {
  local name=$1 limit=$2 t rc left status
  shift 2
  left=$((DEADLINE - $(date +%s)))
  if [ "$left" -lt 15 ]; then
    printf '%-10s %-26s %5s\n' "$name" "SKIPPED (no time left)" "-" | tee -a "$SUM"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $name (limit ${limit}s): $*" >>"$LOG"
  t=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT (${limit}s)" ;;
    *) status="FAILED (rc $rc)" ;;
  esac
  printf '%-10s %-26s %4ds\n' "$name" "$status" "$(($(date +%s) - t))" | tee -a "$SUM"
  return 0
}

# ---- env: versions first, whatever else is missing
env_report() {
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  else echo "no nvidia-smi"; fi
  "$PY" - <<'EOF'
import importlib, platform, sys
print("python", sys.version.split()[0], sys.executable, platform.machine())
for mod in ("torch", "torchvision", "timm", "lightly", "faiss", "numpy", "yaml", "safetensors", "tensorboard",
            "click", "tqdm", "matplotlib", "pytest"):
    try:
        m = importlib.import_module(mod)
        print(f"{mod:12s} {getattr(m, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        print(f"{mod:12s} MISSING ({type(e).__name__}: {e})")
import torch
print("cuda available", torch.cuda.is_available(), "| torch cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"{p.total_memory / 2**30:.0f} GiB", "sm", f"{p.major}.{p.minor}", "bf16",
          torch.cuda.is_bf16_supported())
EOF
}

# ---- wheels: carried packages that are missing here or here at another version
install_wheels() {
  [ -d "$WHL" ] || { echo "no wheel folder $WHL: nothing to install"; return 0; }
  local need=() w dist ver have
  for w in "$WHL"/*.whl; do
    [ -e "$w" ] || continue
    dist=$(basename "$w" | cut -d- -f1)             # e.g. faiss_cpu
    ver=$(basename "$w" | cut -d- -f2)
    have=$("$PY" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except Exception: print('')" "${dist//_/-}" 2>/dev/null)
    if [ "$have" = "$ver" ]; then echo "wheel: $dist $ver already installed"
    else echo "wheel: $dist have '${have:-none}', carried $ver: installing"; need+=("$w"); fi
  done
  [ ${#need[@]} -eq 0 ] && return 0
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "${need[@]}"
}
export PY WHL SITE
export -f env_report install_wheels

step env 60 bash -c env_report
grep -E '^(python|torch|torchvision|timm|lightly|faiss|cuda available|device) ' "$LOG" | sed 's/^/  /' >>"$SUM"
step wheels 120 bash -c install_wheels
[ -d "$SITE" ] && export PYTHONPATH=$SITE:$PYTHONPATH
grep -E "^wheel: |no wheel folder" "$LOG" | sed 's/^/  /' >>"$SUM"

step import 60 "$PY" -c "import ssl_vit.engine.trainer, ssl_vit.evaluation.knn, ssl_vit.cli, lightly, faiss, timm, torch
print('ssl_vit from', ssl_vit.__file__, '| timm', timm.__version__, '| lightly', lightly.__version__, '| torch', torch.__version__)"

# ---- data
DATA=""
for d in "${SSLVIT_GPU_DATA:-}" "$REPO/data/fashion-mnist" /usr/share/datasets/fashion-mnist; do
  [ -n "$d" ] || continue
  if [ -e "$d/train-images-idx3-ubyte.gz" ] || [ -e "$d/train-images-idx3-ubyte" ]; then DATA=$d; break; fi
done
if [ -z "$DATA" ]; then
  DATA=/tmp/sslvit_fmnist_synthetic
  step data 60 "$PY" -c "from pathlib import Path; from tests.conftest import make_fmnist
make_fmnist(Path('$DATA'), n_train=$EVAL_N, n_test=2000); print('synthetic Fashion-MNIST-format data in $DATA')"
  echo "  data: synthetic (no Fashion-MNIST carried): $DATA" >>"$SUM"
else
  echo "  data: $DATA" | tee -a "$SUM" >>"$LOG"
fi

# ---- the CUDA tests
step pytest 180 "$PY" -m pytest -q -m cuda tests -p no:cacheprovider --continue-on-collection-errors
grep -E "(passed|failed|skipped|error).* in [0-9.]+s" "$LOG" | tail -1 | sed 's/^/  pytest: /' >>"$SUM"

# ---- the step benchmark, eager (sslvit vs the lightly + timm reference)
step bench 200 "$PY" eval/bench/bench_step.py --device "$DEV" --no-demo --precision bf16 "${BENCH[@]}" \
  --json "$OUT/bench_step_cuda.json"

# ---- 50 steps of sslvit pretrain on CUDA (its final kNN too)
RUN=/tmp/sslvit_gpu_check_run
step pretrain 150 "$PY" -m ssl_vit pretrain "${PRETRAIN[@]}" --output-dir "$RUN" --overwrite \
  --set "data.dataset=fmnist:$DATA" --set "train.device=$DEV" --set log.progress=false \
  --set eval.max_train=5000 --set eval.max_test=1000
[ -f "$RUN/metrics.jsonl" ] && cp "$RUN/metrics.jsonl" "$OUT/pretrain_metrics.jsonl"

# ---- feature extraction on CUDA
step eval 120 "$PY" eval/bench/bench_eval.py --device "$DEV" --dataset "fmnist:$DATA" --n "$EVAL_N" --repeats 3 \
  --out "$OUT/bench_eval_cuda.json"

# ---- SDPA vs plain attention on CUDA
step attention 60 "$PY" eval/bench/bench_attention.py --device "$DEV" --dtypes bf16 "${ATTN[@]}" \
  --json "$OUT/bench_attention_cuda.json"

# ---- eager and compiled side by side, in the time left
step compile 400 "$PY" eval/bench/bench_step.py --device "$DEV" --no-demo --precision bf16 "${BENCH[@]}" --compile \
  --json "$OUT/bench_step_cuda_compile.json"

# ---- the figures
"$PY" - "$OUT" >>"$SUM" 2>&1 <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for name in ("bench_step_cuda.json", "bench_step_cuda_compile.json"):
    p = out / name
    if p.exists():
        d = json.loads(p.read_text())
        print(f"{name}: {d.get('device')} bf16 GEMM peak {d['peaks_gflops']['bf16'] / 1e3:.0f} TFLOP/s")
        for r in d["rows"]:
            line = (f"  {r['config']} {r['dtype']}: sslvit {r['ms_sslvit']:.0f} ms ({r['pairs_s_sslvit']:.0f} pairs/s, "
                    f"MFU {r['mfu_sslvit']:.2f}), reference {r['ms_reference']:.0f} ms (MFU {r['mfu_reference']:.2f}), "
                    f"speedup {r['speedup']:.2f}x")
            if "ms_sslvit_compile" in r:
                line += (f"; compiled {r['ms_sslvit_compile']:.0f} ms (MFU {r['mfu_sslvit_compile']:.2f}, "
                         f"{r['speedup_compile']:.2f}x, compile ~{r['compile_s']:.0f} s)")
            print(line)
p = out / "bench_eval_cuda.json"
if p.exists():
    d = json.loads(p.read_text())
    print(f"bench_eval_cuda.json: {d['device']}, {d['n']} images: " +
          "; ".join(f"{k} {v:.0f} img/s" for k, v in d["img_per_s_best"].items()) +
          f"; speedup {d['speedup_best']:.2f}x; kNN {d['knn']['knn_predict_s']} s")
p = out / "pretrain_metrics.jsonl"
if p.exists():
    recs = [json.loads(l) for l in p.read_text().splitlines() if l.strip()]
    loss = [r for r in recs if "train/loss" in r]
    knn = [r for r in recs if any("knn" in k for k in r)]
    if loss:
        print(f"pretrain: {len(loss)} loss records, step {loss[-1].get('step')}, loss {loss[-1]['train/loss']:.4f}, "
              f"throughput {loss[-1].get('train/throughput', 0):.0f} pairs/s")
    if knn:
        print("pretrain kNN:", {k: v for k, v in knn[-1].items() if "knn" in k})
EOF
printf 'total %ds (budget %ds)\n' "$(($(date +%s) - T0))" "$BUDGET" | tee -a "$SUM"
exit 0
