#!/usr/bin/env bash
# The Deep Weight Prior's MNIST grid (DESIGN §15) as a queue of jobs, one (size, seed) each, run
# by LANES lanes side by side on one thread each. Resumable: every job is `sweep --resume`, a job
# that finished leaves a marker, and a job a killed lane held is freed when the queue restarts.
#
#   bash docs/scripts/dwp_mnist_queue.sh LANES [SEEDS] [SIZES]
#   (defaults: SEEDS "2 3 4", SIZES "200 500 1000"; the data folder is $FASTREG_DATA, else ./data)
#
# Runs land in runs/dwp_mnist; their results outlive that folder once a report has kept them
# (python -m fastreg.report runs/dwp_mnist --keep docs/reports/dwp_mnist.json ...).
set -uo pipefail
cd "$(dirname "$0")/../.."
LANES=${1:?usage: dwp_mnist_queue.sh LANES [SEEDS] [SIZES]}
SEEDS=${2:-2 3 4}
SIZES=${3:-200 500 1000}
DATA=${FASTREG_DATA:-data}
Q=runs/queue_dwp_mnist
mkdir -p "$Q"
rm -rf "$Q"/*.lock                       # a lock outlives a killed lane: no lane runs yet
[ -f runs/dwpbank/bank.safetensors ] || python -m fastreg.collect \
    --from-npy conv1="$DATA/dwp-notmnist-kernels/conv7x7_train.npy" \
    --from-npy conv2="$DATA/dwp-notmnist-kernels/conv5x5_test.npy" --out runs/dwpbank
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
lane() {
  for s in $SEEDS; do for n in $SIZES; do
    job="n${n}_s${s}"
    [ -f "$Q/$job.done" ] && continue
    mkdir "$Q/$job.lock" 2>/dev/null || continue      # another lane has it
    echo "$(date -u +%FT%TZ) lane $1: $job"
    if python -m fastreg.sweep --dataset mnist --arch fconv --reg-layers conv1,conv2 \
        --bank runs/dwpbank/bank.safetensors --data-root "$DATA" --out runs/dwp_mnist --resume \
        --sizes "$n" --seeds "$s" --methods dwp -- --steps 2000 --batch-size 256 --weight-decay 0; then
      touch "$Q/$job.done"
    fi
    rmdir "$Q/$job.lock"
  done; done
}
for i in $(seq 1 "$LANES"); do lane "$i" & sleep 5; done
wait
