"""The bank-recipe study: source test accuracy and conv1 filter quality against training time,
per collection folder (``python -m fastreg.collect ... --out FOLDER``), beside the old bank.

    python docs/scripts/bank_study.py runs/study/* --out docs/reports/bank_study.md

Writes the Markdown table and ``figures/bank_study_conv1.png`` (each recipe's seed-0 conv1
filters in colour, and the old bank's) next to it. conv1 metrics (``fastreg.filter_metrics``):
low-frequency energy (higher = smoother; white noise 0.17), total variation (lower = smoother;
white noise 1.13) and a fresh judge's AUC for telling the filters from Gaussian noise (1 =
clearly structured, 0.5 = noise-like).
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch

from fastreg.bank import KernelBank, bank_file
from fastreg.filter_metrics import judge_auc, low_freq_energy, total_variation
from fastreg.io_util import atomic_write_bytes, read_json, safe_torch_load
from fastreg.viz import grid, kernel_tiles


def conv1_metrics(w: torch.Tensor) -> dict:
    """Metrics of conv1 filters ``[O, 3, k, k]`` (slices grouped by filter for the judge)."""
    k = w.reshape(-1, w.shape[-2], w.shape[-1])
    noise = torch.randn(k.shape, generator=torch.Generator().manual_seed(0))
    return {"lfe": low_freq_energy(k), "tv": total_variation(k),
            "auc_vs_noise": judge_auc(noise, k, group_learned=1, group_bank=w.shape[1])}


def study_rows(folders: list[Path]) -> list[dict]:
    rows = []
    for d in folders:
        if not (d / "recipe.json").exists():
            continue
        recipe = read_json(d / "recipe.json")
        for seed_dir in sorted(d.glob("seed*")):
            if not (seed_dir / "result.json").exists():
                continue
            res = read_json(seed_dir / "result.json")
            w = safe_torch_load(seed_dir / "model.pt")["conv1.weight"].float()
            rows.append({"folder": d.name, "seed": res["seed"], "recipe": recipe, "test_acc": res["test_acc"],
                         "train_time_s": res["train_time_s"], "conv1": w, **conv1_metrics(w)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/reports/bank_study.md"))
    a = ap.parse_args()
    rows = study_rows(a.folders)
    old = KernelBank.load(bank_file("dwpnet_e4"))
    old_w = old.filters("conv1")[:64]                 # seed 0's conv1 filters, in colour
    old_m = conv1_metrics(old.filters("conv1"))
    L = ["# Bank-recipe study", "", f"Made by `python docs/scripts/bank_study.py {' '.join(map(str, a.folders))}`. "
         "One row per trained source model (DWPNet on the CIFAR-10 source split, SGD with nesterov "
         "momentum, batch 128, 5 % linear warm-up, label smoothing 0.1, bf16 autocast on this CPU; "
         "schedule after the warm-up and crop + flip augmentation as listed). Train time: one CPU "
         "thread per model, measured beside one to four other jobs on this 2-core machine, so "
         "compare epochs (313 steps each) rather than minutes.", "",
         "| recipe | seed | width | epochs | lr | schedule | augment | weight decay | test acc (%) | "
         "train time (min) | conv1 low-freq energy ↑ | conv1 total variation ↓ | judge AUC vs noise ↑ |",
         "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rc = r["recipe"]
        L.append(f"| {r['folder']} | {r['seed']} | {rc['width']} | {rc['epochs']} | {rc['lr']} | "
                 f"{rc.get('schedule', 'cosine')} | {'crop + flip' if rc.get('augment', True) else 'none'} | "
                 f"{rc.get('weight_decay', 5e-4)} | {100 * r['test_acc']:.2f} | {r['train_time_s'] / 60:.1f} | "
                 f"{r['lfe']:.3f} | {r['tv']:.3f} | {r['auc_vs_noise']:.3f} |")
    src = json.loads(old.meta.get("source_test_acc", "{}"))
    old_name = bank_file("dwpnet_e4").name
    L.append(f"| old bank (`{old_name}`, all 5 seeds) | 0–4 | 0.5 | 4 | 0.05 | cosine | crop + flip | 0.0005 | "
             f"{100 * np.mean(list(src.values())):.2f} (mean) | — | {old_m['lfe']:.3f} | {old_m['tv']:.3f} | "
             f"{old_m['auc_vs_noise']:.3f} |")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("old bank (4 epochs)", old_w)] + [(f"{r['folder']} s{r['seed']}\n{100 * r['test_acc']:.1f} %",
                                                  r["conv1"]) for r in rows if r["seed"] == 0]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.4), squeeze=False)
    for ax, (title, w) in zip(axes[0], panels):
        tiles, _ = kernel_tiles(w, 64)
        ax.imshow(np.clip(grid(tiles, 8), 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=110)
    plt.close(fig)
    atomic_write_bytes(a.out.parent / "figures" / "bank_study_conv1.png", buf.getvalue())
    L += ["", "![conv1 filters per recipe](figures/bank_study_conv1.png)", ""]
    atomic_write_bytes(a.out, "\n".join(L).encode())
    print(f"wrote {a.out} ({len(rows)} models)")


if __name__ == "__main__":
    main()
