#!/usr/bin/env bash
# Sweep throughput on this machine (docs/scaling.md): the same small grid run by the local
# path (one run after another, torch using every core) and as Ray tasks on a local cluster
# of WORKERS one-CPU workers started on loopback. Prints runs per hour for both.
#   bash bench/sweep_throughput.sh DATA_ROOT [OUT] [WORKERS]
# Needs ray (pip install -e ".[ray]"). OUT is wiped first; nothing else is touched.
set -euo pipefail
DATA=${1:?usage: bash bench/sweep_throughput.sh DATA_ROOT [OUT] [WORKERS]}
OUT=${2:-runs/throughput}
WORKERS=${3:-2}
GRID=(--data-root "$DATA" --width 0.5 --amp --sizes 100 --methods baseline,adv1 --seeds 0,1,2)
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled TQDM_DISABLE=1
PORT=$(python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
TEMP=/tmp/fr-ray-tp-$$
rm -rf "$OUT"
mkdir -p "$OUT"

t0=$(date +%s.%N)
python -m fastreg.sweep "${GRID[@]}" --out "$OUT/local" > "$OUT/local.log" 2>&1
t1=$(date +%s.%N)

ray start --head --port "$PORT" --num-cpus "$WORKERS" --node-ip-address 127.0.0.1 \
  --include-dashboard false --disable-usage-stats --temp-dir "$TEMP" > "$OUT/ray_start.log" 2>&1
trap 'ray stop --force > /dev/null 2>&1; rm -rf "$TEMP"' EXIT
t2=$(date +%s.%N)
python -m fastreg.sweep "${GRID[@]}" --out "$OUT/ray" --ray "127.0.0.1:$PORT" --cpus-per-run 1 \
  > "$OUT/ray.log" 2>&1
t3=$(date +%s.%N)

python - "$OUT" "$t0" "$t1" "$t2" "$t3" "$WORKERS" <<'PYEOF'
import json, os, platform, sys
from pathlib import Path
out, t0, t1, t2, t3, workers = Path(sys.argv[1]), *map(float, sys.argv[2:6]), sys.argv[6]
def accs(p):
    return sorted((str(f.parent.relative_to(p)), json.loads(f.read_text())["test_acc"]) for f in p.rglob("final.json"))
local, ray = accs(out / "local"), accs(out / "ray")
n = len(local)
assert n == len(ray) > 0, (local, ray)
cpu = platform.processor() or platform.machine()
print(f"machine: {os.cpu_count()} CPUs ({cpu}); {n} runs (n=100, half width, 300 steps)")
print(f"local sweep:        {t1 - t0:7.1f} s  {3600 * n / (t1 - t0):6.1f} runs/h")
print(f"ray, {workers} workers:     {t3 - t2:7.1f} s  {3600 * n / (t3 - t2):6.1f} runs/h  (cluster already up)")
same = all(a == b for a, b in zip(local, ray))
print(f"same test accuracies in both: {same}")
PYEOF
