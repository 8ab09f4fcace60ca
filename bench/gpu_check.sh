#!/usr/bin/env bash
# One script for a GPU machine (no network needed; torch, triton, nvcc preinstalled):
# builds the native extension, runs the CUDA correctness tests, runs the benchmarks,
# runs a short tuning sweep of the fused step, writes everything under $OUT (9 files)
# and prints a short table last, in about GPU_CHECK_BUDGET seconds (default 350: under
# 6 minutes). Steps run most important first; each gets at most
# what is left of the budget (at least 10 s), so a slow card loses the tail, not the core.
#   bash bench/gpu_check.sh            (OUT defaults to ./gpu-out)
source "$(dirname "$0")/gpu_common.sh"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export MAX_JOBS=${MAX_JOBS:-16}
export FASTREG_REQUIRE_EXT=1   # a failed compile must fail build_ext, so the JIT path is tried
t0=$(date +%s)
TOTAL=${GPU_CHECK_BUDGET:-350}   # seconds for the whole script; each step gets at most what is left
left() { local r=$(( TOTAL - ($(date +%s) - t0) - 20 )); (( r < $1 )) && echo $(( r > 10 ? r : 10 )) || echo "$1"; }
machine_info

echo "== build (setup.py build_ext --inplace) =="
if ! timeout $(left 120) $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  echo "build_ext failed (see build.log); trying the JIT build (FASTREG_JIT=1)"
  export FASTREG_JIT=1
fi
# Loads the op once here (a JIT build compiles now, into torch's extension cache). If that
# fails too, the tests run without it (native tests skip, and say so) instead of a JIT
# error at import stopping pytest's collection of the Triton tests as well.
if ! timeout $(left 120) $PY -c "import fastreg.ops._native as n; op = n.load(); print('native op:', op); assert op" \
    >> "$OUT/build.log" 2>&1; then
  echo "native op: NOT BUILT (see build.log); its tests and benchmarks are skipped" | tee -a "$OUT/build.log"
  unset FASTREG_JIT
fi
tail -n 1 "$OUT/build.log"
# What training will use: `auto` must pick the fused step here (a failed self-test falls back
# to eager with a warning, which would leave every timing below meaningless for training).
timeout $(left 60) $PY -W always -c "from fastreg.ops import resolve_backend; print('disc_step backend auto on cuda:', resolve_backend('auto', 'cuda'))" \
  2>&1 | tee "$OUT/backend.txt"

echo "== CUDA correctness tests =="
# Separate pytest calls, the sampler's (short) first: one file's failure or cut-off
# does not take the other's results with it.
for t in ops/test_disc_step:30 ops/test_sample:45 ops/test_disc_step_triton:150 scale/test_ddp:40 \
         library/test_bayes:30 library/test_vae_conv:20 library/test_transfer:30; do
  timeout $(left ${t##*:}) $PY -m pytest -q -rA -m cuda tests/${t%%:*}.py -p no:cacheprovider \
    >> "$OUT/cuda_tests.log" 2>&1
  echo "cuda tests ${t%%:*} exit code: $? (124 = cut off by the budget)" | tee -a "$OUT/cuda_tests.log"
done
grep -E "(passed|failed|skipped|error).* in [0-9.]+s" "$OUT/cuda_tests.log" | tail -n 2

echo "== benchmarks =="
# One pytest per suite, each with its own JSON, so a suite cut off by its timeout
# loses only its own numbers; merged into $OUT/bench.json afterwards.
BT=$(mktemp -d)
# pytest-benchmark writes its JSON at the end of a session, so the fused kernels' numbers
# get a session of their own, ahead of the slow torch.compile warm-ups.
for suite in "disc_step:60:triton" "disc_step:70:eager or compile" "sample:40:" "train_step:50:" "priors:30:" "many_layers:40:" "bayes:30:" "transfer:30:"; do
  IFS=: read -r name cap sel <<< "$suite"
  tag=$name${sel:+-${sel%% *}}
  timeout $(left "$cap") $PY -m pytest bench/test_bench_$name.py --benchmark-only -q ${sel:+-k "$sel"} \
    -p no:cacheprovider --benchmark-json="$BT/$tag.json" >> "$OUT/bench.log" 2>&1
  echo "bench $tag exit code: $? (124 = cut off by the budget)" | tee -a "$OUT/bench.log"
done
$PY - "$OUT/bench.json" "$BT"/*.json <<'PYEOF'
import json, os, sys
merged = {"benchmarks": []}
for p in sys.argv[2:]:
    try:                       # a suite cut off, crashed, or with every test skipped
        d = json.load(open(p))  # leaves no file or an empty one
    except (OSError, ValueError):
        print(f"no benchmark results in {os.path.basename(p)}")
        continue
    merged.setdefault("machine_info", d.get("machine_info"))
    merged["benchmarks"] += d.get("benchmarks", [])
json.dump(merged, open(sys.argv[1], "w"), indent=1)
PYEOF

echo "== tuning sweep of the fused step (bench/tune_disc.py) =="
budget=$(( $(left 90) - 20 ))
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
