"""Fused Triton discriminator step (DESIGN.md §3.1): host code and op registration.

``disc_step_triton`` -> ``torch.ops.fastreg.disc_step_fused`` (registered here, one
opaque custom op so a compiled training step does not graph-break on Triton launches)
-> ``launch`` -> kernels in disc_step_kernels.py. Per call: [batch norm] stats kernel,
main fused fwd+bwd kernel, one deterministic torch.sum over per-program partials
(skipped when one program ran), [batch norm with a G head] dx kernel.
"""
from __future__ import annotations

import functools
import os
from typing import List, Optional, Sequence, Tuple

import torch
import triton
from torch import Tensor

from . import disc_step_kernels as K
from .disc_step_eager import DiscStepOutput
from .fused_limits import MAX_FUSED_INPUT

# Output allocator; tests replace it with a NaN-filling one to prove every element is written.
_alloc = torch.empty

ELEMS = 4096       # [rows, DP] tile size of the stats and dx passes (~32 fp32 regs/thread)
CHUNK = 32         # column chunk of the wide-layer (chunked) kernel
# tl.dot input precisions: ieee = fp32 FMA (default, DESIGN.md §6: 1e-4), tf32 = tensor
# cores (5e-3), tf32x3 = 3 TF32 products, about fp32 accuracy on tensor cores.
PRECISIONS = ("ieee", "tf32", "tf32x3")


def _has_maxnreg() -> bool:
    # Without maxnreg, ptxas picked 32 registers + ~14 KB/thread of spills for the
    # fused kernel at (128, 128) (sm_90 AOT compile); 255 cut the stack to ~2.5 KB.
    try:
        from triton.backends.nvidia.compiler import CUDAOptions
        return "maxnreg" in CUDAOptions.__dataclass_fields__
    except Exception:
        return False


_HAS_MAXNREG = _has_maxnreg()


def _p2(n: int) -> int:
    """Padded tile extent: power of two, >= 16 (tl.dot's minimum)."""
    return max(16, triton.next_power_of_2(int(n)))


def _interpreted(dev: torch.device) -> bool:
    return dev.type != "cuda" or os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def flat_size(D: int, param_numels: Sequence[int], batch_norm: bool) -> int:
    """Length of the reduced buffer: grads in parameters() order, d/g loss, [BN sums]."""
    return sum(param_numels) + 2 + (2 * D if batch_norm else 0)


def _flat_offsets(D: int, hidden: Sequence[int], bn: bool) -> dict:
    """Kernel constexprs: where each W_i (then b_i), w_o, the losses and the BN sums sit
    in a partial row (= ``disc.parameters()`` order; absent layers get unused offsets)."""
    off = 2 * D if bn else 0
    offs, widths = {}, [D, *hidden]
    for i in range(3):
        offs[f"OFF_W{i + 1}"] = off
        if i < len(hidden):
            off += widths[i + 1] * widths[i] + widths[i + 1]
    offs["OFF_WO"] = off
    off += hidden[-1] + 1
    offs["OFF_LOSS"] = off
    offs["OFF_S"] = off + 2
    return offs


def _scratch_layout(BB: int, DP: int, HP: Sequence[int], L: int) -> dict:
    """Chunked kernel constexprs: per-program scratch = z, A_1..A_L, two J buffers."""
    sc = {"OFF_A1": BB * DP}
    sc["OFF_A2"] = sc["OFF_A1"] + BB * HP[0]
    sc["OFF_A3"] = sc["OFF_A2"] + (BB * HP[1] if L >= 2 else 0)
    sc["OFF_AL"] = sc[f"OFF_A{L}"]
    sc["OFF_JA"] = sc["OFF_A3"] + (BB * HP[2] if L >= 3 else 0)
    sc["JW"] = max(HP[:L])
    sc["OFF_JB"] = sc["OFF_JA"] + BB * sc["JW"]
    sc["SCR"] = sc["OFF_JB"] + BB * sc["JW"]
    return sc


def launch(x: torch.Tensor, params: Sequence[torch.Tensor], norm: str, loss: str,
           slope: float, eps: float, d_target: float, g_target: Optional[float],
           precision: str = "ieee", block_b: int = 0, num_programs: int = 0,
           variant: str = "auto"):
    """Run the kernels on ``x`` ``[B, D]`` (float32, contiguous).

    Returns ``(logits [B], flat, g_grad [B, D] or [0])`` where ``flat`` holds the
    D grads flattened in ``disc.parameters()`` order, then d_loss, g_loss.
    ``variant``: "registers" keeps whole-width tiles in registers (padded widths <= 128),
    "chunked" streams activations through scratch (any width, e.g. a whole 3x7x7 filter's
    147 inputs); "auto" picks.
    """
    B, D = x.shape
    if B == 0:
        raise ValueError("disc step on an empty batch")
    if _p2(D) > MAX_FUSED_INPUT:   # wider [rows, D] tiles overflow sm_90 shared memory
        raise ValueError(f"the fused disc step serves up to {MAX_FUSED_INPUT} inputs, got {D}; use backend='eager'")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if variant not in ("auto", "registers", "chunked"):
        raise ValueError(f"variant must be auto, registers or chunked, got {variant!r}")
    bn = norm == "batch"
    has_g = g_target is not None
    ws = list(params[2:] if bn else params)
    hidden = [int(w.shape[0]) for w in ws[0:-2:2]]
    L = len(hidden)
    if not 1 <= L <= 3:
        raise ValueError(f"the Triton disc step supports 1-3 hidden layers, got {L}")
    H = hidden + [16] * (3 - L)  # absent layers: unused dummies
    DP = _p2(D)
    interp = _interpreted(x.device)
    BB = block_b or (64 if interp else 16 if DP > 512 else 32)  # wide rows: [BB, DP] tiles fit smem
    n_tiles = triton.cdiv(B, BB)
    cap = num_programs or (4 if interp else 2 * _sm_count(x.device.index or 0))
    P = min(n_tiles, cap)

    offs = _flat_offsets(D, hidden, bn)
    total = flat_size(D, [p.numel() for p in params], bn)

    if bn:
        n_st = triton.cdiv(B, ELEMS // DP)
        Ps = min(n_st, 4 if interp else max(1, 4096 // DP))  # bounds the finalize reads
        stats = _alloc((Ps, 3, DP), device=x.device, dtype=torch.float32)
        K._bn_stats_kernel[(Ps,)](x, stats, B, n_st, D=D, DP=DP, BLOCK_B=ELEMS // DP,
                                  num_warps=4)
    else:
        Ps, stats = 0, x
    musd = _alloc(2 * DP, device=x.device, dtype=torch.float32)
    logits = _alloc(B, device=x.device, dtype=torch.float32)
    g_grad = _alloc((B, D) if has_g else (0,), device=x.device, dtype=torch.float32)
    part = _alloc((P, total), device=x.device, dtype=torch.float32)

    w = ws + [ws[0], ws[1]] * (3 - L)  # dummy pointers for absent layers
    gam, bet = (params[0], params[1]) if bn else (x, x)
    HP = [_p2(h) for h in H]
    if variant == "auto":   # whole-width register tiles only up to 128 (input and hidden)
        variant = "chunked" if max(HP + [DP]) > 128 else "registers"
    common = dict(
        D=D, DP=DP, H1=H[0], H1P=HP[0], H2=H[1], H2P=HP[1], H3=H[2], H3P=HP[2],
        HL=hidden[-1], HLP=_p2(hidden[-1]), L=L, BATCH_NORM=bn, HINGE=loss == "hinge",
        HAS_G=has_g, BLOCK_B=BB, STAT_BLOCK=16, PREC=precision, TOTAL=total,
        **offs, num_stages=1,  # no pipelining: W tiles are L2-resident; 3 stages ~doubles smem
        **({} if interp or not _HAS_MAXNREG else {"maxnreg": 255}))
    args = (x, gam, bet, w[0], w[1], w[2], w[3], w[4], w[5], ws[-2], ws[-1],
            stats, Ps, musd, logits, g_grad if has_g else logits, part)
    scalars = (B, n_tiles, float(d_target), float(g_target or 0.0), float(slope), float(eps))
    if variant == "registers":
        K._disc_main_kernel[(P,)](*args, *scalars, **common,
                                  num_warps=8 if max(hidden) >= 128 else 4)
    else:
        sc = _scratch_layout(BB, DP, HP, L)
        scratch = _alloc((P, sc["SCR"]), device=x.device, dtype=torch.float32)
        c = [min(CHUNK, n) for n in [DP, *HP, _p2(hidden[-1])]]
        K._disc_chunked_kernel[(P,)](*args, scratch, *scalars, **common, **sc, CD=c[0], C1=c[1],
                                   C2=c[2], C3=c[3], CL=c[4], num_warps=4)
    red = part[0] if P == 1 else part.sum(0)  # fixed-order reduction: deterministic
    if bn and has_g:
        K._bn_dx_kernel[(triton.cdiv(B, ELEMS // DP),)](
            x, g_grad, musd, gam, red, B, D=D, DP=DP, OFF_S=offs["OFF_S"], BLOCK_B=ELEMS // DP,
            num_warps=4)
    return logits, red, g_grad


@torch.library.custom_op("fastreg::disc_step_fused", mutates_args=())
def disc_step_fused(x: Tensor, params: List[Tensor], norm: str, loss: str, slope: float,
                    eps: float, d_target: float, g_target: Optional[float], precision: str,
                    block_b: int, num_programs: int, variant: str) -> Tuple[Tensor, Tensor, Tensor]:
    """``x`` ``[B, D]`` float32 -> ``(logits [B], flat, g_grad [B, D] or [0])``;
    ``flat`` = D grads in parameters() order, then d_loss, g_loss, [BN sums]."""
    return launch(x.contiguous(), [p.contiguous() for p in params], norm, loss, slope, eps,
                  d_target, g_target, precision, block_b, num_programs, variant)


@disc_step_fused.register_fake
def _(x, params, norm, loss, slope, eps, d_target, g_target, precision, block_b, num_programs, variant):
    B, D = x.shape
    n = flat_size(D, [p.numel() for p in params], norm == "batch")
    g = x.new_empty((B, D) if g_target is not None else (0,), dtype=torch.float32)
    return (x.new_empty((B,), dtype=torch.float32), x.new_empty((n,), dtype=torch.float32), g)


def disc_step_triton(x: torch.Tensor, disc, d_target: float = 0.0,
                     g_target: Optional[float] = 1.0, block_b: int = 0, num_programs: int = 0,
                     variant: str = "auto", precision: str = "ieee") -> DiscStepOutput:
    """The disc step of DESIGN.md §3 from one fused forward over ``x`` (float32 math).

    ``block_b`` / ``num_programs`` (0 = auto) are tuning knobs: rows per tile and
    the persistent grid size (more programs = more partials to sum); ``variant``
    forces the "registers" or the "chunked" (wide-layer) kernel; ``precision`` is
    one of PRECISIONS ("tf32x3": tensor cores at about fp32 accuracy).
    """
    params = [p.detach().float() for p in disc.parameters()]
    x2 = x.detach().reshape(x.shape[0], disc.dim).float()
    logits, flat, g = torch.ops.fastreg.disc_step_fused(
        x2, params, disc.norm, disc.loss, float(disc.slope), float(disc.eps), float(d_target),
        None if g_target is None else float(g_target), str(precision),
        int(block_b), int(num_programs), str(variant))
    grads, off = [], 0
    for p in params:
        grads.append(flat[off:off + p.numel()].view(p.shape))
        off += p.numel()
    has_g = g_target is not None
    return DiscStepOutput(
        logits=logits, d_loss=flat[off], d_grads=tuple(grads),
        g_loss=flat[off + 1] if has_g else None,
        g_grad=g.view(x.shape).to(x.dtype) if has_g else None)
