"""The figures of ``python -m fastreg.report``: accuracy vs train size (with paired Δ),
filter grids side by side, and the discriminator / generator curves of one seed."""
from __future__ import annotations

import io

import numpy as np
import torch

from ...errors import UnsafeCheckpoint
from ..methods import method_order
from ..protocol import describe_protocol
from ..runs import Run, finite, layer_kernels, read_jsonl
from ...viz import panels_png


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _sans_bank(ex: str) -> str:
    """The EXTRA part without its ``bank=…`` entry (cells that never saw a bank have none)."""
    return ", ".join(p for p in ex.split(", ") if p and not p.startswith("bank="))


def figures(cells: dict, deltas: dict, ok: list[Run], bank: torch.Tensor | None,
            stem: str, bank_name: str | None = None, protocol: dict | None = None) -> dict[str, bytes]:
    """{file name: PNG bytes}: accuracy vs size, filter grids, D/G curves, of runs of one
    ``protocol`` (``protocol.protocol``; its description ends every figure's title).

    The accuracy figure has one column per variant (EXTRA settings × reg layers): test
    accuracy per method on top and, below, the paired Δ to the baseline with its 95 % CI,
    the scale at which the methods actually differ. A cell that never saw a bank (the
    baseline) appears in the column of every bank. Filter panels show ``bank`` (a sample of
    the bank named ``bank_name``) and the conv1 filters of runs of one size and seed: the
    baseline and up to four other methods, those that trained with that bank first. The D/G
    curves are drawn where a run has them."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    out = {}
    about = describe_protocol(protocol) if protocol else ""
    word = "validation" if (protocol or {}).get("eval_split") == "val" else "test"
    banked = {_sans_bank(c.variant) for c in cells if "bank=" in c.variant}
    variants = sorted({(c.variant, c.layers) for c in cells
                       if "bank=" in c.variant or c.variant not in banked}, key=lambda v: (v[1], v[0]))
    methods = sorted({c.method for c in cells}, key=method_order)
    sizes = sorted({c.size for c in cells})
    fig, axes = plt.subplots(2, len(variants), figsize=(4.4 * len(variants), 7.5), squeeze=False,
                             sharex=True, sharey="row", layout="constrained")
    for j, (ex, ly) in enumerate(variants):
        top, bot = axes[0, j], axes[1, j]
        for i, m in enumerate(methods):
            keys = sorted(c for c in cells if c.layers == ly and c.method == m and (
                c.variant == ex or ("bank=" not in c.variant and c.variant == _sans_bank(ex))))
            if not keys:
                continue
            style = dict(marker="osD^v<>ph*"[i % 10], capsize=3, color=plt.get_cmap("tab20")(i % 20), label=m)
            accs = [[r.final["test_acc"] * 100 for r in cells[c]] for c in keys]
            top.errorbar([c.size for c in keys], [np.mean(a) for a in accs],
                         yerr=[np.std(a, ddof=1) if len(a) > 1 else 0 for a in accs], **style)
            dk = [c for c in keys if c in deltas]
            if dk:
                shift = 1.07 ** (i - (len(methods) - 1) / 2)     # side by side on the log axis
                mean = np.array([deltas[c][0] for c in dk])
                lo = np.array([deltas[c][1] if deltas[c][1] is not None else deltas[c][0] for c in dk])
                hi = np.array([deltas[c][2] if deltas[c][2] is not None else deltas[c][0] for c in dk])
                bot.errorbar([c.size * shift for c in dk], mean, yerr=[mean - lo, hi - mean], **style)
        top.set_title(f"{ex + chr(10) if ex else ''}reg {ly}", fontsize=8)
        bot.axhline(0, color="k", lw=0.8)
        for ax in (top, bot):
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(n) for n in sizes])        # the sizes run, nothing else
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
            ax.grid(alpha=0.3)
        bot.set_xlabel("training images")
    axes[0, 0].set_ylabel(f"{word} accuracy (%), mean ± std over seeds")
    axes[1, 0].set_ylabel("Δ to baseline (pp), paired 95 % CI")
    legend: dict = {}                        # every method once (colours are global)
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    fig.legend(list(legend.values()), list(legend), fontsize=7, loc="outside lower center",
               ncol=min(len(legend), 4))             # below the plots: it never hides a point
    fig.suptitle(f"{word.capitalize()} accuracy against training images per method, and its paired Δ to the baseline"
                 + (f"\n{about}" if about else ""), fontsize=9)
    out[f"{stem}_acc_vs_size.png"] = _png(fig)

    base = sorted((r for r in ok if r.method == "baseline"), key=lambda r: (r.kept, r.size, r.seed)) or \
        sorted(ok, key=lambda r: (r.kept, r.size, r.seed))      # a run folder, not a kept row: it has filters
    n, seed = base[0].size, base[0].seed
    at = [r for r in ok if r.size == n and r.seed == seed]
    if bank_name is not None and any(r.bank_name == bank_name and r.method != "baseline" for r in at):
        at = [r for r in at if r.bank_name == bank_name or r.method == "baseline"]

    best: dict[str, Run] = {}      # one run per method: conv1 regularized, with the bank shown, first
    for r in sorted(at, key=lambda r: (r.layers != "conv1", r.bank_name != bank_name, method_order(r.method, r.variant))):
        best.setdefault(r.method, r)
    pick = sorted(best.values(), key=lambda r: method_order(r.method, r.variant))
    pick = [r for r in pick if r.method == "baseline"] + [r for r in pick if r.method != "baseline"][:4]
    panels, shown = [], []
    if bank is not None:
        g = torch.Generator().manual_seed(0)
        panels.append((f"bank sample\n({bank_name})" if bank_name else "bank sample",
                       bank[torch.randperm(len(bank), generator=g)[:64]]))
    for r in pick:
        try:
            w = layer_kernels(r.dir, "conv1", flat=False)
        except (UnsafeCheckpoint, KeyError, TypeError, OSError):
            continue
        panels.append((f"{r.method}\n(after training)", w))
        shown.append(r)
    if panels:
        what = (f"Conv1 filters after training, n={n}, seed {seed}" + (", beside a bank sample" if bank is not None else "")
                if shown else f"A sample of the bank's conv1 kernels ({bank_name or 'bank'}); no run kept conv1")
        out[f"{stem}_filters.png"] = panels_png(panels, what + (f"\n{about}" if about else ""))

    curves = [r for r in sorted(at, key=lambda r: method_order(r.method, r.variant))
              if any("d_acc_real" in m for m in read_jsonl(r.dir / "metrics.jsonl"))]
    if not curves:       # no run here had a discriminator: nothing to draw
        return out
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for r in curves:
        rows = [m for m in read_jsonl(r.dir / "metrics.jsonl") if "d_acc_real" in m]
        for ax, key in zip(axes, ("d_acc_real", "d_acc_fake", "g_loss")):
            pts = [(m["step"], m[key]) for m in rows if finite(m.get(key))]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=f"{r.label} ({r.layers})")
    for ax, key in zip(axes, ("D accuracy on bank (real)", "D accuracy on conv kernels (fake)", "G loss")):
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:     # beside the panels: long labels hide no curve
        axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"Discriminator accuracy and generator loss over training steps, n={n}, seed {seed}"
                 + (f"\n{about}" if about else ""), fontsize=9)
    fig.subplots_adjust(top=0.78 if about else 0.86, wspace=0.25)   # the title above the panels' own
    out[f"{stem}_training.png"] = _png(fig)
    return out
