"""What a finished training run shows its user: how bank-like its filters were at the start
and are at the end (judge AUC against the bank), and one picture per layer of bank | start |
end filters. ``train`` calls it at the end of every run.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from ..bank import KernelBank
from ..errors import BankError
from ..filter_metrics import judge_auc
from ..io_util import atomic_write_bytes
from ..viz import panels_png

JUDGED = 4   # the judge costs seconds per layer: at most this many layers, the first ones


def bank_reference(bank: KernelBank, layer: str, weight_shape, bank_map=None) -> tuple[torch.Tensor, int] | None:
    """The bank kernels that serve ``layer`` as 2-D slices ``[N, k, k]`` and their rows per
    filter (1 when pooled layers differ); None when the bank has none of its size."""
    try:
        src = bank.plan(layer, weight_shape, "slice", bank_map).src
    except BankError:
        return None
    return bank.units(src, "slice"), bank.rows_of(src) or 1


def judge(weight: torch.Tensor, ref: tuple[torch.Tensor, int], seed: int) -> float | None:
    """Judge AUC of a conv weight ``[O, C, k, k]`` against bank slices (0.5 = indistinguishable,
    1 = trivially told apart; ``filter_metrics.judge_auc``); None with too few kernels."""
    k = weight.detach().float().cpu().reshape(-1, weight.shape[-2], weight.shape[-1])
    if len(k) < 4 or len(ref[0]) < 4:
        return None
    return judge_auc(k, ref[0].cpu(), seed=seed, max_n=1000 if weight.shape[1] <= 3 else 4096,
                     group_learned=weight.shape[1], group_bank=ref[1])


def bank_sample(ref: tuple[torch.Tensor, int], channels: int, n: int = 64) -> torch.Tensor:
    """Up to ``n`` whole bank filters ``[n, C, k, k]`` when the bank's filters have the layer's
    ``channels``, else ``n`` bank slices; evenly spaced over the bank (every source model shown)."""
    slices, rows = ref
    k = slices.shape[-1]
    whole = rows == channels and rows > 1 and len(slices) % rows == 0
    units = slices.reshape(-1, rows, k, k) if whole else slices.reshape(-1, 1, k, k)
    idx = torch.linspace(0, len(units) - 1, min(n, len(units))).round().long()
    return units[idx].cpu()


def summarize(out: Path, start: Mapping[str, torch.Tensor], end: Mapping[str, torch.Tensor],
              bank: KernelBank | None, seed: int, caption: str, bank_map=None) -> dict[str, dict]:
    """For the first ``JUDGED`` layers of ``start``: judge AUC at start and end, and the
    picture ``filters_{layer}.png`` (bank sample | start | end); returns
    {layer: {"judge_auc_start", "judge_auc_end"}} (values None without a bank)."""
    result = {}
    for layer in list(start)[:JUDGED]:
        w0, w1 = start[layer], end[layer]
        ref = bank_reference(bank, layer, w0.shape, bank_map) if bank is not None else None
        auc0 = judge(w0, ref, seed) if ref is not None else None
        auc1 = judge(w1, ref, seed) if ref is not None else None
        result[layer] = {"judge_auc_start": auc0, "judge_auc_end": auc1}
        fmt = lambda v: f", judge AUC {v:.2f}" if v is not None else ""  # noqa: E731
        panels = ([("bank", bank_sample(ref, w0.shape[1]))] if ref is not None else []) + \
            [(f"start{fmt(auc0)}", w0), (f"end{fmt(auc1)}", w1)]
        atomic_write_bytes(out / f"filters_{layer}.png", panels_png(panels, f"{layer}: {caption}"))
    return result


def report_lines(result: Mapping[str, dict], out: Path) -> list[str]:
    """The lines ``train`` prints about the filters."""
    lines = []
    for layer, r in result.items():
        if r["judge_auc_start"] is not None and r["judge_auc_end"] is not None:
            lines.append(f"{layer}: judge AUC vs the bank {r['judge_auc_start']:.2f} at start → "
                         f"{r['judge_auc_end']:.2f} at the end (0.5 = indistinguishable from bank filters, "
                         f"1 = told apart every time)")
    if result:
        lines.append(f"filters (bank | start | end): {out / ('filters_' + next(iter(result)) + '.png')}")
    return lines
