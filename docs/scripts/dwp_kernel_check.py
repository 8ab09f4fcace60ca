"""What the VI priors did to the kernels of the MNIST runs, and how two kernel VAEs score kernel
sets (docs/results.md, the Deep Weight Prior's experiment; DESIGN.md §15). Reads run folders
and VAE files only; no test digit is involved.

    python docs/scripts/dwp_kernel_check.py runs/dwp_mnist runs/dwpbank/bank.safetensors \
        runs/vae runs/dwpvae docs/reports/dwp_kernels.json     # measures, records, prints
    python docs/scripts/dwp_kernel_check.py docs/reports/dwp_kernels.json   # prints the record

Table 1: median 2-D kernel norm of conv1 and conv2 at the end of each VI row (mean over the
seeds at n = 50), beside the bank's. Table 2: the median ELBO (nats per kernel, 16 draws of z)
of kernel sets under fastreg's MLP VAE (fitted to the bank) and the paper's own conv VAE
(converted by import_dwp_vae.py): the bank, the bank shrunk, the zero kernel, and the kernels
the VI rows ended with (seed 0).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from fastreg import KernelBank
from fastreg import vae as vae_mod

ROWS = ("normal", "loguniform-trunc", "vae")
LAYERS = {"conv1": 7, "conv2": 5}


def norms(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(-1, w.shape[-1] * w.shape[-2]).norm(dim=1)


@torch.no_grad()
def elbo(vae, x: torch.Tensor) -> float:
    torch.manual_seed(0)
    return float(torch.stack([vae.elbo(x) for _ in range(16)]).mean(0).median())


def measure(runs: Path, bank_path: Path, ours_dir: Path, dwp_dir: Path) -> dict:
    bank = KernelBank.load(bank_path)
    final = {r: [load_file(f) for f in sorted(runs.glob(f"n50/vaeinit-slice-unscaled+vi-{r}/s*/final_kernels.safetensors"))]
             for r in ROWS}
    start = load_file(next(runs.glob("n50/vaeinit-slice-unscaled+vi-vae/s0/start_kernels.safetensors")))
    rec = {"norms": {"the bank (min / median)": [f"{norms(bank.layers[n]).min():.3f} / {norms(bank.layers[n]).median():.3f}"
                                                 for n in LAYERS],
                     "the VAE init (seed 0)": [f"{norms(start[n]).median():.3f}" for n in LAYERS]}}
    for r in ROWS:
        rec["norms"][f"VI, {r} ({len(final[r])} seeds)"] = [
            f"{sum(float(norms(f[n].float()).median()) for f in final[r]) / len(final[r]):.3f}" for n in LAYERS]
    vaes = {n: (vae_mod.load(next(ours_dir.glob(f"vae-slice-{k * k}-*.safetensors")))[0],
                vae_mod.load(dwp_dir / f"vae{k}x{k}.safetensors")[0]) for n, k in LAYERS.items()}
    sets = {"the bank": {n: bank.layers[n] for n in LAYERS}}
    sets.update({f"the bank × {a}": {n: bank.layers[n] * a for n in LAYERS} for a in (0.3, 0.1)})
    sets["the zero kernel"] = {n: torch.zeros(8, k, k) for n, k in LAYERS.items()}
    sets["the VAE init (seed 0)"] = start
    sets.update({f"the end of VI, {r} (seed 0)": final[r][0] for r in ROWS})
    rec["elbo"] = {name: [f"{elbo(v, ks[n].reshape(-1, k * k).float()):.1f}" for n, k in LAYERS.items() for v in vaes[n]]
                   for name, ks in sets.items()}
    return rec


def print_tables(rec: dict) -> None:
    print("| median kernel norm (n = 50, mean over seeds) | conv1 (7×7) | conv2 (5×5) |\n|---|---:|---:|")
    for name, cells in rec["norms"].items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\n| median ELBO, nats per kernel | conv1: fastreg's VAE | conv1: the paper's VAE "
          "| conv2: fastreg's VAE | conv2: the paper's VAE |\n|---|---:|---:|---:|---:|")
    for name, cells in rec["elbo"].items():
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) == 2:
        print_tables(json.loads(Path(sys.argv[1]).read_text()))
    elif len(sys.argv) == 6:
        from fastreg.io_util import atomic_write_json
        rec = measure(*map(Path, sys.argv[1:5]))
        atomic_write_json(sys.argv[5], rec)
        print_tables(rec)
    else:
        sys.exit("usage: dwp_kernel_check.py RUNS BANK OUR_VAE_DIR DWP_VAE_DIR OUT.json | dwp_kernel_check.py OUT.json")
