# Sourced by gpu_check.sh and gpu_sweep.sh: repo root, $OUT, $PY, import path, machine info.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

machine_info() {  # card, driver and versions, to stdout and $OUT/machine.txt
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    $PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"
  } 2>&1 | tee "$OUT/machine.txt"
}
