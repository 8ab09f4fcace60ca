"""Filter metrics of each run against the bank it trained with: which bank (by its recorded
metadata among the packaged banks, else its recorded file), which of its layers serve a run's
layer, and the judge AUC, MMD² and low-freq energy of the run's kernels (DESIGN.md §4)."""
from __future__ import annotations

import torch
from safetensors import safe_open

from ...bank import PACKAGED, KernelBank, bank_file
from ...errors import BankError, UnsafeCheckpoint
from ...filter_metrics import judge_auc, low_freq_energy, mmd_rbf
from ..banks import bank_id, recorded_meta, run_bank_id
from ..runs import FINAL_KERNELS, Run, layer_kernels

def metric_keys(layer: str) -> tuple[str, str, str]:
    """Keys of (judge AUC, MMD², low-freq energy) in ``Run.metrics`` and results.json:
    bare for conv1, suffixed for deeper layers (``auc_conv2``, ...)."""
    sfx = "" if layer == "conv1" else f"_{layer}"
    return f"auc{sfx}", f"mmd{sfx}", f"lfe{sfx}"


def judge_rows(layer: str) -> int:
    """Kernels the judge subsamples per set. Deeper layers have 64+ slices per filter, and
    the halves are split by whole filter: 4096 rows keep dozens of filters on each side."""
    return 1000 if layer == "conv1" else 4096


def measured_layers(r: Run) -> list[str]:
    """The layers a run's filter metrics cover: those its final kernels kept (conv1 and the
    regularized or bank-initialized layers), else (older runs) conv1 and its --reg-layers."""
    small = r.dir / FINAL_KERNELS
    if small.exists():
        try:
            with safe_open(str(small), framework="pt") as f:
                return list(f.keys())
        except Exception:  # safetensors raises its own error types; layer_kernels reports it
            pass
    return ["conv1"] + [n for n in r.layers.split(",") if n != "conv1"]


JUDGED_LAYERS = 4   # a run measuring more layers gets judge AUC and MMD² on conv1 only


def filter_metrics(r: Run, refs: "References") -> None:
    """Judge AUC, MMD² and low-freq energy of the run's final kernels, layer by layer
    (``measured_layers``), against the bank kernels that serve each layer (``refs``). A
    judge costs seconds per layer: a run of many layers (a ResNet's 19 convs) is judged on
    conv1 only; every layer gets its low-freq energy (results.json)."""
    layers = measured_layers(r)
    for layer in layers:
        try:
            w = layer_kernels(r.dir, layer, flat=False)
        except (UnsafeCheckpoint, KeyError, TypeError) as e:
            r.metrics.setdefault("note", f"no {layer} filter metrics ({str(e)[:80]})")
            continue
        k = w.reshape(-1, w.shape[-2], w.shape[-1])
        if not torch.isfinite(k).all():
            r.metrics.setdefault("note", f"non-finite {layer} weights")
            continue
        auc, mmd, lfe = metric_keys(layer)
        r.metrics[lfe] = low_freq_energy(k)
        if layer != "conv1" and len(layers) > JUDGED_LAYERS:
            continue
        bank, group = refs.of(layer, k.shape[-1]) or (None, 1)
        if bank is not None and bank.shape[-1] == k.shape[-1] and len(k) >= 4 and len(bank) >= 4:
            r.metrics[auc] = judge_auc(k, bank, seed=r.seed, max_n=judge_rows(layer),
                                       group_learned=w.shape[1], group_bank=group)
            r.metrics[mmd] = mmd_rbf(k, bank, seed=r.seed)


def bank_filters(kernels: torch.Tensor, rows: int) -> torch.Tensor:
    """Reference kernels as whole filters ``[N, rows, k, k]`` (RGB in pictures when rows is 3)."""
    k = kernels.shape[-1]
    return kernels[: len(kernels) // rows * rows].reshape(-1, rows, k, k)


class References(dict):
    """layer → (reference kernels ``[N, k, k]``, rows per filter), filled in the order layers
    are measured: the bank layers that serve the layer (``KernelBank.source``), pooled as 2-D
    slices. A layer name met again with another kernel size has no reference."""

    def __init__(self, bank: KernelBank | None = None, where: str = "") -> None:
        super().__init__()
        self.bank, self.where, self.sources = bank, where, {}

    def of(self, layer: str, k: int) -> tuple[torch.Tensor, int] | None:
        if layer not in self.sources and self.bank is not None:
            try:
                src = self.bank.source(layer, k)
            except BankError:
                src = None
            self.sources[layer] = src
            if src is not None:
                self[layer] = (self.bank.units(src, "slice"), self.bank.rows_of(src) or 1)   # pooled rows differ: slices
        ref = self.get(layer)
        return ref if ref is not None and ref[0].shape[-1] == k else None

    def describe(self) -> str:
        if not self:
            return "none found (judge AUC and MMD omitted)"
        def pool(src: tuple) -> str:
            return "+".join(src) if len(src) <= 3 else f"{len(src)} layers pooled ({src[0]}, …)"
        parts = [f"layer {n}, {len(t)} kernels" if self.sources[n] == (n,) else
                 f"layer {n}: bank {pool(self.sources[n])}, {len(t)} kernels" for n, (t, _) in self.items()]
        return f"`{self.where}` ({'; '.join(parts)})"


def _packaged_candidates() -> dict[str, tuple[KernelBank, str]]:
    """bank id → (bank, name) for every packaged bank, alone and as ``--bank auto`` merges it
    for non-DWPNet models (each 7x7/5x5 bank + the 3x3 one; older runs used the first bank)."""
    banks = {n: KernelBank.load(f) for n, f in PACKAGED.items() if f.is_file()}
    out = {bank_id(b.meta): (b, f"{n} (packaged)") for n, b in banks.items()}
    for n in [n for n in banks if n.startswith("dwpnet")]:
        if "resnet20" in banks:
            m = KernelBank.merge([banks[n], banks["resnet20"]])
            out[bank_id(m.meta)] = (m, f"{n} + resnet20 (packaged)")
    return out


class BankRefs:
    """Reference kernels per bank: each run is measured against the bank it trained with,
    found by its recorded metadata among the packaged banks, else at its recorded path
    (if that file still holds the same bank); ``--bank`` fixes one for every run."""

    def __init__(self, path: str | None) -> None:
        self.fixed = References(KernelBank.load(bank_file(path)), path) if path else None
        self.by_id: dict[str, References] = {}
        self._packaged: dict | None = None

    def of_run(self, r: Run) -> References:
        if self.fixed is not None:
            return self.fixed
        key = run_bank_id(r.cfg)
        if key not in self.by_id:
            self.by_id[key] = self._find(r)
        return self.by_id[key]

    def _find(self, r: Run) -> References:
        meta = recorded_meta(r.cfg)
        if meta:
            if self._packaged is None:
                self._packaged = _packaged_candidates()
            if bank_id(meta) in self._packaged:
                bank, name = self._packaged[bank_id(meta)]
                return References(bank, name)
        c = str(r.cfg.get("bank"))
        f = bank_file(c)
        if c.lower() not in ("none", "auto") and f.is_file():
            try:
                bank = KernelBank.load(f)
            except BankError:
                return References()
            if not meta or bank_id(bank.meta) == bank_id(meta):
                return References(bank, str(f))
        return References()

    def all(self) -> list[References]:
        """The distinct references in use, each once, those with kernels only."""
        seen = [self.fixed] if self.fixed is not None else list(self.by_id.values())
        return [x for i, x in enumerate(seen) if x and all(x is not y for y in seen[:i])]

    def describe(self) -> str:
        return "; ".join(x.describe() for x in self.all()) or "none found (judge AUC and MMD omitted)"


