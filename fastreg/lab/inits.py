"""The one table of inits ``--init`` offers (DESIGN.md §8, §12): each entry says what it needs,
the function that applies it, how a run's method name and the sweep's help speak of it, and
the sweep methods it adds. ``train``'s choices and help, its dispatch (``prepare``), the sweep's
methods and the report's method names all read this table: adding an init is one
``register_init`` call and the function it names.

Inits that draw from a bank keep each layer's std and run before the priors are fitted (at the
layer's own init scale); inits that copy a source network run after them (``copies``), and
return the modules they copied, which L2-SP pulls toward their start.
"""
from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from ..bank import KernelBank
from ..chain import chain_init, finetune_init
from ..errors import BankError, UsageError
from ..init import init_from_bank
from ..layers import conv_layers
from ..transfer import transfer_init
from ..vae import load as load_vae, vae_for
from .cli import layer_pairs


def parse_vae_files(s: str | None) -> dict[str, str]:
    """``--vae-files conv1=a.safetensors,conv2=b.safetensors``."""
    return layer_pairs(s, "--vae-files", "LAYER=FILE,...")


@dataclass
class Start:
    """What an init or a prior works with: the run's settings (read-only), its model and
    selected layers, the bank and source networks it loaded, the device, the VAE cache."""
    settings: object
    model: nn.Module
    layers: list[str]
    bank: KernelBank | None
    sources: list[dict] | None
    partial: bool                  # sources rebuilt from a bank: its convs only
    device: torch.device
    bank_map: Mapping[str, list[str]] | None
    vae_cache: str = "runs/vae"
    record: dict = field(default_factory=dict)   # what the run folder keeps of the start (init_map.json)

    def vaes(self, unit: str) -> tuple[dict, dict]:
        """Each layer's VAE of its bank kernels in ``unit`` (fitted once, then loaded from the
        VAE cache) and the unit it models; the fit's progress on stderr."""
        s, convs, vaes, units = self.settings, conv_layers(self.model), {}, {}
        files = parse_vae_files(getattr(s, "vae_files", None))
        if set(files) - set(self.layers):
            raise UsageError(f"--vae-files names {', '.join(sorted(set(files) - set(self.layers)))}, not a regularized "
                             f"layer ({', '.join(self.layers)})")
        for n in self.layers:
            if n in files:
                vaes[n], units[n] = self._vae_file(n, files[n], unit, convs[n].weight.shape), "slice"
                continue
            def progress(epoch, elbo, n=n):
                if epoch % 50 == 0 or epoch == s.vae_epochs:
                    sys.stderr.write(f"VAE for {n}: epoch {epoch}/{s.vae_epochs}, ELBO {elbo:.3f} nats per number\n")
            try:
                vaes[n], units[n], _ = vae_for(self.bank, n, convs[n].weight.shape, unit, self.vae_cache,
                                               self.bank_map, s.vae_epochs, seed=0, progress=progress)
            except BankError as e:
                raise UsageError(f"{n}: {e}") from None
        return vaes, units

    def _vae_file(self, layer: str, path: str, unit: str, shape) -> nn.Module:
        """A saved VAE of 2-D kernels for ``layer`` (``--vae-files``), checked against it; its
        file and SHA-256 go into the run's record."""
        if unit != "slice":
            raise UsageError(f"--vae-files: {layer}: a saved VAE models 2-D slices; this run asks for {unit}s")
        try:
            vae, meta = load_vae(path)
        except BankError as e:
            raise UsageError(f"--vae-files: {layer}: {e}") from None
        k = int(shape[-1])
        if vae.dim != k * k:
            raise UsageError(f"--vae-files: {layer} has {k}x{k} kernels, {path} models {vae.dim} numbers")
        self.record.setdefault("vae_files", {})[layer] = {
            "file": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "format": meta.get("format"), "source": meta.get("source", "")}
        return vae


@dataclass(frozen=True)
class Init:
    """One ``--init`` choice. ``needs``: ``"bank"``, ``"sources"`` or ``""``; ``apply(start)``
    sets the start and returns the modules it copied from a source network; ``label(settings)``
    is its part of a run's method name (``""``: none), ``words(settings)`` its part of a
    method's description; ``methods``: the sweep methods it adds, name → settings."""
    name: str
    needs: str
    help: str
    apply: Callable[[Start], list[str]]
    label: Callable[[Mapping], str]
    words: Callable[[Mapping], str]
    methods: Mapping[str, Mapping] = field(default_factory=dict)
    copies: bool = False           # copies a source network: runs after the priors are fitted
    whole_sources: bool = False    # needs whole source networks, not convs rebuilt from a bank


INITS: dict[str, Init] = {}


def register_init(init: Init) -> Init:
    """Add an init to the table (its name is then a ``--init`` choice everywhere)."""
    INITS[init.name] = init
    return init


def needs(name: str | None) -> str:
    """What the init of that name needs (``""`` for a name the table does not have)."""
    return INITS[name].needs if name in INITS else ""


def init_of(name: str) -> Init:
    """The table's entry, or one line naming the choices."""
    if name not in INITS:
        raise UsageError(f"unknown init {name!r}; choose from {', '.join(INITS)}")
    return INITS[name]


def _unit_words(s: Mapping) -> str:
    return ("whole filters, a filter's channels drawn together" if s["init_unit"] == "filter"
            else "2-D kernels, each drawn on its own")


def _drawn(kind: str) -> Callable[[Start], list[str]]:
    """Bank kernels, Gaussian draws or VAE draws, filter by filter or slice by slice (init_from_bank)."""
    def apply(st: Start) -> list[str]:
        s = st.settings
        vaes = st.vaes(s.init_unit)[0] if kind == "vae" else None
        init_from_bank(st.model, st.bank.to(st.device), st.layers, kind, s.init_unit, s.seed, s.shrink,
                       st.bank_map, vaes, rescale=getattr(s, "init_scale", "layer") == "layer")
        return []
    return apply


def _unscaled(s: Mapping) -> str:
    """The label's ending for draws kept as drawn (``--init-scale none``)."""
    return "-unscaled" if s.get("init_scale", "layer") == "none" else ""


def _as_drawn(s: Mapping) -> str:
    return ", kept as drawn" if s.get("init_scale", "layer") == "none" else ""


def _label(prefix: str) -> Callable[[Mapping], str]:
    return lambda s: prefix + ("init" if s["init_unit"] == "filter" else "init-slice") + _unscaled(s)


def _chain(st: Start) -> list[str]:
    got = chain_init(st.model, st.sources, st.layers, st.settings.seed, st.settings.chain_norms, partial=st.partial)
    return got["convs"] + got["norms"]


register_init(Init("default", "", "the model's own random init; the default with --bank none",
                   apply=lambda st: [], label=lambda s: "", words=lambda s: ""))
register_init(Init("bank", "bank", "bank filters, the prior that helps most on a first layer; the default",
                   apply=_drawn("bank"),
                   label=lambda s: ("filterinit" if s["init_unit"] == "filter" else "bankinit") + _unscaled(s),
                   words=lambda s: f"start from bank kernels ({_unit_words(s)}{_as_drawn(s)})",
                   methods={"bankinit": {"init": "bank", "init_unit": "slice"},
                            "filterinit": {"init": "bank", "init_unit": "filter"}}))
register_init(Init("cov", "bank", "draws from a Gaussian fitted to the bank",
                   apply=_drawn("cov"), label=_label("cov"),
                   words=lambda s: f"start from draws from a Gaussian fitted to the bank ({_unit_words(s)}{_as_drawn(s)})",
                   methods={"covinit": {"init": "cov", "init_unit": "filter"},
                            "covinit-slice": {"init": "cov", "init_unit": "slice"}}))
register_init(Init("vae", "bank", "draws from a VAE fitted to the bank, as the Deep Weight Prior initializes",
                   apply=_drawn("vae"), label=_label("vae"),
                   words=lambda s: f"start from draws from a VAE fitted to the bank ({_unit_words(s)}{_as_drawn(s)})",
                   methods={"vaeinit": {"init": "vae", "init_unit": "filter"},
                            "vaeinit-slice": {"init": "vae", "init_unit": "slice"},
                            "vaeinit-slice-unscaled": {"init": "vae", "init_unit": "slice", "init_scale": "none"}}))
register_init(Init("chain", "sources", "the layers of one source network, channels kept coherent: see --sources",
                   apply=_chain, copies=True,
                   label=lambda s: "chaininit" + ("-norms" if s["chain_norms"] else ""),
                   words=lambda s: "start from one source network's layers, channels coherent"
                   + (", with their norms" if s["chain_norms"] else ""),
                   methods={"chaininit": {"init": "chain"},
                            "chaininit-norms": {"init": "chain", "chain_norms": True}}))
def _transfer(st: Start) -> list[str]:
    s = st.settings
    got = transfer_init(st.model, st.sources, s.seed, norms=s.chain_norms,
                        bank=st.bank.to(st.device) if st.bank is not None else None, unit=s.init_unit, shrink=s.shrink)
    st.record["init_map"] = got.as_dict()
    return got.copied


register_init(Init("transfer", "sources", "a source network of another depth or width: new blocks start as "
                   "identities, wider layers replicate channels, narrower ones select them, and a conv the source "
                   "cannot place starts from the bank's statistics; see --sources, --chain-norms",
                   apply=_transfer, copies=True,
                   label=lambda s: "transferinit" + ("-norms" if s["chain_norms"] else ""),
                   words=lambda s: "start from a source network of any depth and width (identity blocks, "
                   "replicated or selected channels)" + (", with its norms" if s["chain_norms"] else ""),
                   methods={"transferinit": {"init": "transfer"},
                            "transferinit-norms": {"init": "transfer", "chain_norms": True}}))
register_init(Init("finetune", "sources", "every layer of a source network but the head",
                   apply=lambda st: finetune_init(st.model, st.sources, st.settings.seed)["modules"],
                   copies=True, whole_sources=True, label=lambda s: "finetune",
                   words=lambda s: "fine-tune a source network (every layer but the head)",
                   methods={"finetune": {"init": "finetune"}}))
