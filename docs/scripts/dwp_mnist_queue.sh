#!/usr/bin/env bash
# What is left of the Deep Weight Prior's MNIST runs (DESIGN §15), as a queue of jobs run by
# LANES lanes side by side on one thread each: the grid (seeds 2-4 at 200, 500 and 1000 digits),
# then the step-budget check at 50 digits (the rows and seeds its report has not kept yet), then
# the paper's own VAEs as the prior at 50 digits (seeds 0-4, ~1.5 h a run), once converted into
# runs/dwpvae by docs/scripts/import_dwp_vae.py (DESIGN §15).
# Resumable: every job is `sweep --resume`, a finished job leaves a marker, and a lock a killed
# lane left is cleared when the queue starts again.
#
#   FASTREG_DATA=<data folder> bash docs/scripts/dwp_mnist_queue.sh LANES
#
# Runs land in runs/; their results outlive it once a report has kept them:
#   python -m fastreg.report runs/dwp_mnist --keep docs/reports/dwp_mnist.json --out docs/reports/dwp_mnist.md ...
set -uo pipefail
cd "$(dirname "$0")/../.."
LANES=${1:?usage: FASTREG_DATA=DIR bash docs/scripts/dwp_mnist_queue.sh LANES}
DATA=${FASTREG_DATA:-data}
Q=runs/queue_dwp_mnist
mkdir -p "$Q"
rm -rf "$Q"/*.lock                       # a lock outlives a killed lane: no lane runs yet
[ -f runs/dwpbank/bank.safetensors ] || python -m fastreg.collect \
    --from-npy conv1="$DATA/dwp-notmnist-kernels/conv7x7_train.npy" \
    --from-npy conv2="$DATA/dwp-notmnist-kernels/conv5x5_test.npy" --out runs/dwpbank
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
V=vaeinit-slice-unscaled
GRID="--steps 2000 --batch-size 256 --weight-decay 0"
BUDGET="--steps 10000 --batch-size 256 --weight-decay 0 --lr-schedule linear --warmup 0"
JOBS=()                                  # name;out;size;seed;methods;train args
for s in 2 3 4; do for n in 200 500 1000; do
  JOBS+=("n${n}_s${s};runs/dwp_mnist;$n;$s;dwp;$GRID")
done; done
for s in 0 1; do JOBS+=("budget_s${s};runs/dwp_mnist_budget;50;$s;$V+vi-loguniform-trunc;$BUDGET"); done
for s in 2 3 4; do
  JOBS+=("budget_s${s};runs/dwp_mnist_budget;50;$s;$V+vi-normal,$V+vi-vae,$V+vi-loguniform-trunc;$BUDGET")
done
PAPER="--vae-files conv1=runs/dwpvae/vae7x7.safetensors,conv2=runs/dwpvae/vae5x5.safetensors"
if [ -f runs/dwpvae/vae7x7.safetensors ] && [ -f runs/dwpvae/vae5x5.safetensors ]; then
  for s in 0 1 2 3 4; do JOBS+=("papervae_s${s};runs/dwp_mnist_papervae;50;$s;$V+vi-vae;$GRID $PAPER"); done
else
  echo "no runs/dwpvae/vae{7x7,5x5}.safetensors: the paper-VAE check is left out (docs/scripts/import_dwp_vae.py)"
fi
lane() {
  for job in "${JOBS[@]}"; do
    IFS=';' read -r name out n s methods args <<< "$job"
    [ -f "$Q/$name.done" ] && continue
    mkdir "$Q/$name.lock" 2>/dev/null || continue      # another lane has it
    echo "$(date -u +%FT%TZ) lane $1: $name"
    # shellcheck disable=SC2086  # the train args split into words
    if python -m fastreg.sweep --dataset mnist --arch fconv --reg-layers conv1,conv2 \
        --bank runs/dwpbank/bank.safetensors --data-root "$DATA" --out "$out" --resume \
        --sizes "$n" --seeds "$s" --methods "$methods" -- $args; then
      touch "$Q/$name.done"
    fi
    rmdir "$Q/$name.lock"
  done
}
for i in $(seq 1 "$LANES"); do lane "$i" & sleep 5; done
wait
