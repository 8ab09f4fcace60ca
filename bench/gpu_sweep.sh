#!/usr/bin/env bash
# Run part of the experiment grid on a GPU machine within a time budget and
# ship the finished runs back as one small tarball (no checkpoints, no PNGs: the
# report reads final_kernels.safetensors). The GPU machine sees only what is carried,
# so the data travel as a pack made here first (38.7 MiB for sizes 100,500,1000 x
# seeds 0-4; one call carries at most 64 MiB including the 5 MB repo):
#
#   here:    echo /.gpu-data/ >> .git/info/exclude
#            python -m fastreg.pack --data-root <full data folder> --sizes 100,500,1000 --out .gpu-data
#   device:  run(command="OUT=$OUT bash bench/gpu_sweep.sh --methods seed --sizes 100 --seeds 0,1,2,3,4",
#                carry=[".gpu-data"], timeout_s=600)
#   here:    mkdir -p runs/gpu && tar xzf <files_at>/runs.tar.gz -C runs/gpu   (one folder per call)
#            python -m fastreg.report runs/gpu --out runs/gpu/report.md
#
# Arguments go to python -m fastreg.sweep (default: full width, the sweep's default methods,
# the README's comparison; `--methods seed` for the seed's grid, docs/reports/results_adversarial.md).
# For the conv1 + conv2 variant (--reg-layers conv1,conv2) leave `baseline` out of
# --methods: a λ = 0, default-init run does not depend on the reg layers, and the report
# pairs each cell with the conv1 baseline of the same size and seeds when its own is absent.
# The Deep Weight Prior's MNIST check with the paper's own VAEs (DESIGN.md §15; ~1.5 h a run on
# one CPU core): carry mnist5k.npz in a folder, the bank and the converted VAEs, fp32 as the grid:
#   here:    mkdir -p .gpu-mnist && cp <data folder>/mnist5k.npz .gpu-mnist/ && echo /.gpu-mnist/ >> .git/info/exclude
#   device:  run(command="OUT=$OUT DATA=.gpu-mnist GPU_SWEEP_AMP= bash bench/gpu_sweep.sh --dataset mnist --arch fconv
#                 --reg-layers conv1,conv2 --bank runs/dwpbank/bank.safetensors --sizes 50 --seeds 0,1,2,3,4
#                 --methods vaeinit-slice-unscaled+vi-vae -- --steps 2000 --batch-size 256 --weight-decay 0
#                 --vae-files conv1=runs/dwpvae/vae7x7.safetensors,conv2=runs/dwpvae/vae5x5.safetensors",
#                carry=[".gpu-mnist", "runs/dwpbank", "runs/dwpvae"], timeout_s=600)
# DESIGN.md §15's step-budget check (~22 min a run on one CPU core) the same way, without --vae-files
# and with --methods vaeinit-slice-unscaled+vi-normal,vaeinit-slice-unscaled+vi-loguniform-trunc,
# vaeinit-slice-unscaled+vi-vae -- --steps 10000 --batch-size 256 --weight-decay 0 --lr-schedule linear
# --warmup 0, carrying runs/vae too (the fitted VAEs, so the GPU does not refit them; --vae-cache runs/vae).
# Runs cut off by the budget are left out; rerunning the sweep resumes nothing here
# (the machine starts bare), so keep each call's grid to what fits.
source "$(dirname "$0")/gpu_common.sh"
export TQDM_DISABLE=1          # one line per run in the log instead of progress bars
DATA=${DATA:-.gpu-data}
BUDGET=${GPU_SWEEP_BUDGET:-500}
SWEEP=runs/gpu-sweep-$(date +%Y%m%d-%H%M%S)   # unique: extracting two calls' tarballs never merges
t0=$(date +%s)
machine_info
# The sampler's native op is not built: its pure-torch fallback draws the same indices,
# and 384 draws per step are not worth the build's minute of GPU time.
AMP=${GPU_SWEEP_AMP---amp}     # GPU_SWEEP_AMP= (empty) runs fp32
timeout "$BUDGET" $PY -m fastreg.sweep --device "${DEVICE:-cuda}" $AMP --data-root "$DATA" --out "$SWEEP" "$@" \
  > "$OUT/sweep.log" 2>&1
echo "sweep exit code: $? (124 = budget reached) after $(( $(date +%s) - t0 )) s" | tee -a "$OUT/sweep.log"
n_done=$(find "$SWEEP" -name final.json 2>/dev/null | wc -l)
tar czf "$OUT/runs.tar.gz" --exclude=checkpoint.pt --exclude='*.png' -C runs "${SWEEP#runs/}"
echo "finished runs: $n_done; runs.tar.gz $(du -h "$OUT/runs.tar.gz" | cut -f1)"
grep -h '"status"' "$SWEEP/sweep_log.jsonl" 2>/dev/null | tail -n 3
