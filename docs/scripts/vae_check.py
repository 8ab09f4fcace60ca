"""How well a kernel VAE (fastreg.vae, DESIGN.md §13) models a bank, checked on held-out
kernels: the Deep Weight Prior's own published notMNIST kernels (an outside kernel set, with
DWP's VAE sizes and 300 epochs) and the default bank's 2-D kernels.

    python docs/scripts/vae_check.py --dwp DWP_KERNELS_FOLDER --out docs/reports/vae_check.md

For each kernel set: the fit's time and final ELBO, the held-out kernels' ELBO (per number),
and how a fresh judge (judge AUC, 0.5 = indistinguishable) and MMD² tell held-out bank kernels
from: the VAE's decoder means (what ``--init vae`` draws), its full draws, draws from the
Gaussian fitted to the same kernels (``--init cov``), and, as the floor, the training kernels.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fastreg.bank import DEFAULT_BANK, KernelBank
from fastreg.filter_metrics import judge_auc, low_freq_energy, mmd_rbf
from fastreg.gaussian import fit_gaussian
from fastreg.io_util import atomic_write_bytes
from fastreg.vae import DEFAULTS, fit
from fastreg.viz import panels_png


def _split(x: torch.Tensor, frac: float = 0.2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    k = int(len(x) * frac)
    return x[perm[k:]], x[perm[:k]]


def sets(dwp: Path | None) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, training kernels, held-out kernels) ``[N, k, k]``."""
    out = []
    if dwp is not None:
        tr7 = torch.from_numpy(np.load(dwp / "conv7x7_train.npy", allow_pickle=False))[:, 0]
        te7 = torch.from_numpy(np.load(dwp / "conv7x7_test.npy", allow_pickle=False))[:, 0]
        out.append(("DWP notMNIST 7×7 (their train / test files)", tr7, te7))
        k5 = torch.from_numpy(np.load(dwp / "conv5x5_test.npy", allow_pickle=False))[:, 0]
        out.append(("DWP notMNIST 5×5 (80 / 20 split)", *_split(k5)))
    bank = KernelBank.load(DEFAULT_BANK)
    for layer in ("conv1", "conv2"):
        f = bank.filters(layer)                     # split by whole filter: sibling slices stay together
        tr, te = _split(f)
        k = f.shape[-1]
        out.append((f"fastreg dwpnet_e24 {layer} 2-D kernels (80 / 20 by filter)", tr.reshape(-1, k, k),
                    te.reshape(-1, k, k)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dwp", type=Path, default=None, help="folder with DWP's conv7x7_{train,test}.npy and conv5x5_test.npy")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("docs/reports/vae_check.md"))
    a = ap.parse_args(argv)
    rows, panels = [], []
    for name, tr, te in sets(a.dwp):
        k = tr.shape[-1]
        hidden, z = DEFAULTS[k]
        t0 = time.time()
        vae, curve = fit(tr.reshape(len(tr), -1), hidden, z, a.epochs, seed=0)
        secs = time.time() - t0
        with torch.no_grad():
            held = float(vae.elbo(te.reshape(len(te), -1), torch.zeros(len(te), z)).mean() / vae.dim)
        g = torch.Generator().manual_seed(1)
        n = min(len(te), 2000)
        means = vae.sample(n, g, mean=True).reshape(-1, k, k)
        draws = vae.sample(n, g).reshape(-1, k, k)
        gauss = fit_gaussian(tr.reshape(len(tr), -1), 0.1).sample(n, g).float().reshape(-1, k, k)
        cmp = {"bank (training kernels)": tr[:n], "VAE decoder means": means, "VAE full draws": draws,
               "Gaussian draws": gauss}
        for what, x in cmp.items():
            rows.append(f"| {name} | {what} | {judge_auc(x, te):.3f} | {mmd_rbf(x, te):.4f} | {low_freq_energy(x):.3f} |")
        rows.append(f"| {name} | (fit: {len(tr)} kernels, hidden {hidden}, z {z}, {a.epochs} epochs, {secs:.0f} s; "
                    f"ELBO per number {curve[-1]:.3f} train, {held:.3f} held out) | | | |")
        panels += [(f"{name[:28]}\nbank", te[:64]), ("VAE means", means[:64]), ("VAE draws", draws[:64])]
        print(name, f"{secs:.0f} s", file=sys.stderr)
    text = "\n".join(["# Kernel VAE check", "", f"Made by `python docs/scripts/vae_check.py{' --dwp DWP' if a.dwp else ''}` "
                      f"(CPU, {time.strftime('%Y-%m-%d')}). Judge AUC and MMD² against the held-out kernels of each set; "
                      "low-freq energy of the kernels themselves (the held-out bank's is the first row's).", "",
                      "| kernel set | kernels compared with the held-out ones | judge AUC | MMD² | low-freq energy |",
                      "|---|---|---:|---:|---:|", *rows, "", "![samples](figures/vae_check.png)", ""])
    atomic_write_bytes(a.out.parent / "figures" / "vae_check.png", panels_png(panels[:12], "held-out bank | VAE decoder means | VAE full draws"))
    atomic_write_bytes(a.out, text.encode())
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
