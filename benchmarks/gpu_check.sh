#!/usr/bin/env bash
# The first (and every) check of gpuad on a real NVIDIA GPU, in one run of under
# 8 minutes, from a source tree on a machine with no package index: it uses the
# CuPy, NumPy, pytest, PyTorch and JAX already installed there.
#
#   bash benchmarks/gpu_check.sh [OUT]      (default OUT: $OUT if set, else
#                                            benchmarks/results/gpu-check-<UTC time>)
#
# Steps, each with its own time limit, each log in OUT (the run goes on after a
# failure; summary.txt lists every step's exit status, and the script exits 1 if
# any failed):
#   1. environment.log  nvidia-smi, python -m gpuad info, versions
#   2. kernels.log      python -m gpuad kernels --check --arch native: every kernel
#                       family compiled by NVRTC for this GPU (this also fills the
#                       kernel cache the later steps use)
#   3. pytest.log       the cuda-marked tests (python -m pytest -m cuda), but for
#                       gpuad.function's, which compile a module per function:
#   3b. function.log    a sample of them: fused kernels and CUDA graphs (tests/compiler), compiled
#                       training loops, replays without transfers, control flow
#   4. bandwidth.log    benchmarks/kernels.py: each kernel family's bandwidth against
#                       a device-to-device copy, and the launch overhead (+ JSON)
#   5. bench.log        python -m gpuad bench --device cuda --quick, beside PyTorch and
#                       JAX (+ JSON, Markdown, PNG)
#
# GPUAD_CHECK_DEVICE=emulated runs the same steps without a GPU (CI does, to keep
# this script working): the kernels for sm_90, no cuda tests, and the benchmarks
# on the emulated device at small sizes, whose figures mean nothing.
# GPUAD_CHECK_LIMIT_SCALE=N multiplies every time limit (a 2-core CI machine
# compiles the kernels several times slower than a GPU host's 16 cores).
set -uo pipefail
cd "$(dirname "$0")/.."

DEVICE=${GPUAD_CHECK_DEVICE:-cuda}
SCALE=${GPUAD_CHECK_LIMIT_SCALE:-1}
OUT=${1:-${OUT:-benchmarks/results/gpu-check-$(date -u +%Y%m%d-%H%M%S)}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# a private kernel cache: step 2 fills it, so no later step waits for NVRTC
export GPUAD_CACHE_DIR=${GPUAD_CACHE_DIR:-$(mktemp -d -t gpuad-cache-XXXXXX)}
PY=${PYTHON:-python3}

if [ "$DEVICE" = emulated ]; then
    ARCH=sm_90
    PYTEST=(-m "cuda and not slow" --co)   # collects only: there is no GPU to run them on
    FUNCTION=(-m "cuda and not slow" --co)
    BANDWIDTH=(--device emulated --elements 65536 --repeats 2 --inner 1 --warmup 1)
    BENCH=(--device emulated --quick --libs gpuad,gpuad-function --workloads overhead,quadratic)
else
    ARCH=native
    PYTEST=(-m cuda)
    FUNCTION=(-m cuda -k "codegen or graphs or training_loop or no_transfer or while_loop_traced or cond_traced")
    BANDWIDTH=(--device cuda)
    BENCH=(--device cuda --quick)
fi

: > "$OUT/summary.txt"
failed=0
step() {  # step NAME LIMIT_SECONDS COMMAND...
    local name=$1 limit=$(($2 * SCALE)) start end status
    shift 2
    start=$(date +%s)
    echo "== $name: $*" | tee -a "$OUT/summary.txt"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    status=$?
    end=$(date +%s)
    [ $status -eq 124 ] && echo "(stopped after $limit s)" >> "$OUT/$name.log"
    echo "   exit $status after $((end - start)) s" | tee -a "$OUT/summary.txt"
    [ $status -ne 0 ] && failed=1
    tail -n 3 "$OUT/$name.log" | sed 's/^/   | /'
    return 0
}

environment() {
    date -u
    git rev-parse HEAD 2>/dev/null || echo "(not a git checkout)"
    command -v nvidia-smi > /dev/null && nvidia-smi
    "$PY" -c "import sys, numpy; print('python', sys.version.split()[0], 'numpy', numpy.__version__)"
    "$PY" -c "import cupy; print('cupy', cupy.__version__)" || true
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" || true
    "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())" || true
    "$PY" -m gpuad info
}

echo "gpuad GPU check on $DEVICE into $OUT" | tee -a "$OUT/summary.txt"
# the limits add up to 8 minutes
export -f environment
export PY
step environment 30 bash -c environment
step kernels 90 "$PY" -m gpuad kernels --check --arch "$ARCH"
step pytest 150 "$PY" -m pytest -q -p no:cacheprovider --durations=15 "${PYTEST[@]}" \
    --ignore=tests/test_function.py --ignore=tests/test_control_flow.py --ignore=tests/compiler
step function 60 "$PY" -m pytest -q -p no:cacheprovider --durations=10 "${FUNCTION[@]}" \
    tests/test_function.py tests/test_control_flow.py tests/compiler
step bandwidth 70 "$PY" benchmarks/kernels.py "${BANDWIDTH[@]}" --out "$OUT"
step bench 80 "$PY" -m gpuad bench "${BENCH[@]}" --out "$OUT"
echo "done: $([ $failed -eq 0 ] && echo 'every step passed' || echo 'SOME STEPS FAILED'); logs in $OUT" \
    | tee -a "$OUT/summary.txt"
exit $failed
