#!/usr/bin/env bash
# One script for a lent GPU machine (no network; torch, triton, nvcc preinstalled):
# builds the native extension, runs the CUDA correctness tests, runs the benchmarks,
# writes everything under $OUT and prints a short table last. Budget: < 6 minutes.
#   bash bench/gpu_check.sh            (OUT defaults to ./gpu-out)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-16}
export FASTREG_REQUIRE_EXT=1   # a failed compile must fail build_ext, so the JIT path is tried
t0=$(date +%s)
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"
} 2>&1 | tee "$OUT/machine.txt"

echo "== build (setup.py build_ext --inplace) =="
if ! timeout 240 $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  echo "build_ext failed (see build.log); the JIT path will be tried by the tests (FASTREG_JIT=1)"
  export FASTREG_JIT=1
fi
$PY -c "import fastreg.ops._native as n; print('native op:', n.load())" 2>&1 | tee -a "$OUT/build.log"

echo "== CUDA correctness tests =="
timeout 200 $PY -m pytest -q -x -m cuda tests/test_disc_triton.py tests/test_sampler.py \
  --junitxml="$OUT/cuda_tests.xml" -p no:cacheprovider > "$OUT/cuda_tests.log" 2>&1
echo "cuda tests exit code: $?" | tee -a "$OUT/cuda_tests.log"
tail -n 3 "$OUT/cuda_tests.log"

echo "== benchmarks =="
timeout 240 $PY -m pytest bench/ --benchmark-only -q -p no:cacheprovider \
  --benchmark-json="$OUT/bench.json" > "$OUT/bench.log" 2>&1
echo "bench exit code: $?" | tee -a "$OUT/bench.log"

echo "== summary (wall $(( $(date +%s) - t0 )) s) =="
$PY bench/summarize.py "$OUT/bench.json" | tee "$OUT/summary.md"
