#!/usr/bin/env bash
# GPU check: does ramer run on this GPU host? Under 10 minutes. Results under $OUT:
#   gpu_check.log            every step, with its time
#   install.log              pip output of the .[gpu] install
#   checks.jsonl             FAISS GPU vs CPU neighbours under the leakage filter; a RAMER fit on CUDA
#   demo/                    one demo fold trained on CUDA (`ramer demo --folds 0`): its report and log
#   retrieval_gpu.{json,md}  benchmarks/bench_retrieval.py at N = 120k and 1M
#
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh          # on a GPU machine (run from the repo root)
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh --cpu    # the dry run: every step on CPU, small sizes,
#                                                      # no install (uses the current python)
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh --carried  # a GPU machine with no package registry: no
#       install; the current python must already import ramer's dependencies and faiss-gpu (carried
#       as wheels onto PYTHONPATH by `benchmarks/gpu_carry.sh`; docs/performance.md, "GPU")
# Without a visible CUDA GPU the GPU run falls back to the dry run and says so in one line.
set -euo pipefail
OUT=${OUT:-$(mktemp -d -t ramer-gpu-XXXX)}
mkdir -p "$OUT"
MODE=gpu
INSTALL=1
if [[ "${1:-}" == "--cpu" ]]; then MODE=cpu; fi
if [[ "${1:-}" == "--carried" ]]; then INSTALL=0; fi
PY=${PYTHON:-python3}
log() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/gpu_check.log"; }
step() {  # step NAME SECONDS CMD...: one bounded step; a failure is logged and the script goes on
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    if timeout "$limit" "$@" >>"$OUT/$name.log" 2>&1; then
        log "$name: ok ($((SECONDS - t0)) s)"
    else
        log "$name: FAILED (exit $?, $((SECONDS - t0)) s; see $OUT/$name.log)"; FAILED=1
    fi
}
FAILED=0
log "mode $MODE, results in $OUT, $(nproc) cores, $(date -u +%F)"

if [[ $MODE == gpu ]]; then
    if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >>"$OUT/gpu_check.log" 2>&1; then
        log "no CUDA GPU visible (nvidia-smi): falling back to the CPU dry run"; MODE=cpu
    fi
fi
if [[ $MODE == gpu && $INSTALL == 1 ]]; then
    # A fresh venv: faiss-gpu and faiss-cpu unpack into one folder, so never both (docs/cli.md, GPU).
    VENV=${VENV:-$OUT/venv}
    if step install 420 bash -c "$PY -m venv '$VENV' && '$VENV/bin/pip' install -q torch && '$VENV/bin/pip' install -q -e '.[gpu,dev]'"; then
        PY=$VENV/bin/python
    fi
    if ! "$PY" -c "import torch, faiss, sys; sys.exit(0 if torch.cuda.is_available() and faiss.get_num_gpus() > 0 else 1)" \
            >>"$OUT/gpu_check.log" 2>&1; then
        log "torch or faiss sees no GPU after the install: falling back to the CPU dry run"; MODE=cpu
    fi
fi
DEVICE=cuda; SIZES=120000,1000000; LABELED=800; UNLABELED=1600; EPOCHS=6
if [[ $MODE == cpu ]]; then DEVICE=cpu; SIZES=5000,20000; LABELED=300; UNLABELED=200; EPOCHS=2; fi
"$PY" -c "import torch, faiss; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'faiss', faiss.__version__, 'gpus', faiss.get_num_gpus())" \
    | tee -a "$OUT/gpu_check.log"

# 1. FAISS on the device returns the CPU index's neighbours under the leakage filter; RAMER trains there.
step checks 90 bash -c "'$PY' benchmarks/gpu_check.py --device $DEVICE > '$OUT/checks.jsonl'"
# 2. The GPU tests (tests/test_gpu.py: skipped without CUDA and faiss-gpu, so a skip is a failure here).
if [[ $MODE == gpu ]]; then
    step tests 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py -rs
    grep -q "skipped" "$OUT/tests.log" && { log "tests: a GPU test was SKIPPED (see $OUT/tests.log)"; FAILED=1; }
fi
# 3. The retrieval benchmark (exact search, CPU rows and, on the GPU, the device rows; IVF and
#    Qdrant edge, both CPU-only and measured in benchmarks/results/retrieval.md, left out to stay in time).
step retrieval 180 "$PY" benchmarks/bench_retrieval.py --sizes $SIZES --edge-max 0 --approx-min 100000000 \
    --no-diagnostics --max-reps 3 --device $DEVICE --name retrieval_$DEVICE --out "$OUT"
# 4. One demo fold trained on the device, through the CLI (the log says where FAISS ran).
step demo 200 env RAMER_DEVICE=$DEVICE RAMER_DATA_DIR="$OUT/demo/data" RAMER_RUNS_DIR="$OUT/demo/runs" \
    RAMER_RESULTS_DIR="$OUT/demo/results" "$PY" -m pipeline.cli demo --out "$OUT/demo/data/demo" --folds 0 \
    --labeled $LABELED --unlabeled $UNLABELED --epochs $EPOCHS
log "done in ${SECONDS} s: $([[ $FAILED == 0 ]] && echo 'every step ok' || echo 'some step FAILED')"
exit $FAILED
