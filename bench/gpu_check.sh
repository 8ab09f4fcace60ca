#!/usr/bin/env bash
# One script for a lent GPU machine (no network; torch, triton, nvcc preinstalled):
# builds the native extension, runs the CUDA correctness tests, runs the benchmarks,
# runs a short tuning sweep of the fused step, writes everything under $OUT (8 files)
# and prints a short table last. Hard cap GPU_CHECK_BUDGET seconds (default 540).
#   bash bench/gpu_check.sh            (OUT defaults to ./gpu-out)
source "$(dirname "$0")/gpu_common.sh"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-16}
export FASTREG_REQUIRE_EXT=1   # a failed compile must fail build_ext, so the JIT path is tried
t0=$(date +%s)
TOTAL=${GPU_CHECK_BUDGET:-540}   # seconds for the whole script; each step gets at most what is left
left() { local r=$(( TOTAL - ($(date +%s) - t0) - 20 )); (( r < $1 )) && echo $(( r > 10 ? r : 10 )) || echo "$1"; }
machine_info

echo "== build (setup.py build_ext --inplace) =="
if ! timeout $(left 200) $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  echo "build_ext failed (see build.log); the JIT path will be tried by the tests (FASTREG_JIT=1)"
  export FASTREG_JIT=1
fi
$PY -c "import fastreg.ops._native as n; print('native op:', n.load())" 2>&1 | tee -a "$OUT/build.log"

echo "== CUDA correctness tests =="
timeout $(left 180) $PY -m pytest -q -rA -m cuda tests/test_disc_triton.py tests/test_sampler.py \
  -p no:cacheprovider > "$OUT/cuda_tests.log" 2>&1
echo "cuda tests exit code: $?" | tee -a "$OUT/cuda_tests.log"
tail -n 3 "$OUT/cuda_tests.log"

echo "== benchmarks =="
# One pytest per suite, each with its own JSON, so a suite cut off by its timeout
# loses only its own numbers; merged into $OUT/bench.json afterwards.
BT=$(mktemp -d)
for suite in disc_step:200 train_step:70 sample:60; do
  name=${suite%%:*}
  timeout $(left ${suite##*:}) $PY -m pytest bench/test_bench_$name.py --benchmark-only -q \
    -p no:cacheprovider --benchmark-json="$BT/$name.json" >> "$OUT/bench.log" 2>&1
  echo "bench $name exit code: $?" | tee -a "$OUT/bench.log"
done
$PY - "$OUT/bench.json" "$BT"/*.json <<'PYEOF'
import json, os, sys
merged = {"benchmarks": []}
for p in sys.argv[2:]:
    if not os.path.exists(p):  # a suite that was cut off or crashed
        continue
    d = json.load(open(p))
    merged.setdefault("machine_info", d.get("machine_info"))
    merged["benchmarks"] += d.get("benchmarks", [])
json.dump(merged, open(sys.argv[1], "w"), indent=1)
PYEOF

echo "== tuning sweep of the fused step (bench/tune_disc.py) =="
budget=$(( $(left 110) - 20 ))
if (( budget > 15 )); then
  timeout $(left $(( budget + 40 ))) $PY bench/tune_disc.py --budget $budget --json "$OUT/tune.json" \
    > "$OUT/tune.log" 2>&1
  rc=$?
  tail -n 1 "$OUT/tune.log"
  echo "tune exit code: $rc" | tee -a "$OUT/tune.log"
else
  echo "skipped: no time left" | tee "$OUT/tune.log"
fi

echo "== summary (wall $(( $(date +%s) - t0 )) s) =="
$PY bench/summarize.py "$OUT/bench.json" | tee "$OUT/summary.md"
