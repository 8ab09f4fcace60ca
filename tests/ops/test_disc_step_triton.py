"""Fused Triton disc step vs eager vs an independent float64 reference (DESIGN.md §3, §6).

On CPU the kernels run under TRITON_INTERPRET=1 (tests/conftest.py), so shapes stay small.
"""
from __future__ import annotations

import pytest
import torch

from fastreg import Discriminator
from fastreg.ops import disc_step
from fastreg.ops import disc_step_triton as host
from fastreg.ops.disc_step_eager import disc_step_eager
from fastreg.ops.disc_step_triton import disc_step_triton
from reference import assert_close, reference_step, rel_err

DEV = "cuda" if torch.cuda.is_available() else "cpu"
TOL_IEEE, TOL_TF32 = 1e-4, 5e-3


@pytest.fixture(autouse=True)
def poison_outputs(monkeypatch):
    """Every buffer the fused path allocates starts as NaN: unwritten elements fail."""
    def nan_alloc(shape, **kw):
        return torch.full((shape,) if isinstance(shape, int) else tuple(shape), float("nan"), **kw)
    monkeypatch.setattr(host, "_alloc", nan_alloc)


def make_disc(k, hidden, norm, loss, seed=0, device=DEV, channels=1):
    """D with random (non-default) gamma/beta and perturbed weights."""
    torch.manual_seed(seed)
    d = Discriminator(kernel_size=k, hidden=hidden, norm=norm, loss=loss, channels=channels).to(device)
    with torch.no_grad():
        for p in d.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return d


# --------------------------------------------------------------------- CPU cases
CASES = [  # id, k, B, hidden, norm, loss, d_target, g_target
    ("B2", 3, 2, (32,), "batch", "ns", 0.0, 1.0),
    ("B17", 5, 17, (32, 32), "batch", "hinge", 1.0, 1.0),
    ("B300", 7, 300, (64, 64), "batch", "ns", 1.0, None),
    ("k11", 11, 40, (32,), "kernel", "ns", 0.3, 0.8),
    ("w16-3layers", 5, 33, (16, 16, 16), "kernel", "hinge", 0.0, 1.0),
    ("w256", 3, 50, (256,), "batch", "ns", 0.0, 1.0),
    ("3layers-batch", 7, 64, (32, 48, 24), "batch", "hinge", 0.0, 0.0),
    ("kernel-hinge-real", 3, 70, (48, 32), "kernel", "hinge", 1.0, None),
    ("kernel-ns", 5, 100, (48, 32), "kernel", "ns", 0.0, 1.0),
]


@pytest.mark.parametrize("variant", ["registers", "chunked", "auto"])
@pytest.mark.parametrize("norm,loss", [("batch", "ns"), ("kernel", "hinge")])
def test_whole_filter_rows_match_reference(variant, norm, loss):
    """Whole 3x7x7 filters (147 features, padded to 256) as [B, C, k, k] and as [B, D]."""
    disc = make_disc(7, (32, 16), norm, loss, seed=5, channels=3)
    torch.manual_seed(6)
    x = torch.randn(40, 3, 7, 7, device=DEV) * 0.5
    ref = reference_step(x, disc, 0.0, 1.0)
    out = disc_step_triton(x, disc, 0.0, 1.0, variant=variant)
    assert out.g_grad.shape == x.shape
    assert_close(out, ref, TOL_IEEE, 1.0)
    flat = disc_step_triton(x.reshape(40, -1), disc, 0.0, 1.0, variant=variant)
    assert torch.equal(flat.g_grad, out.g_grad.reshape(40, -1))
    assert_close(disc_step(x, disc, 1.0, None, backend="eager"), reference_step(x, disc, 1.0, None),
                 TOL_IEEE, None)


@pytest.mark.parametrize("variant", ["registers", "chunked"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fused_matches_reference_and_eager(case, variant):
    _, k, B, hidden, norm, loss, d_t, g_t = case
    disc = make_disc(k, hidden, norm, loss, seed=B)
    torch.manual_seed(B + 1)
    x = torch.randn(B, k, k, device=DEV) * 0.5 + 0.1 * torch.randn(k * k, device=DEV).view(k, k)
    ref = reference_step(x, disc, d_t, g_t)
    out = disc_step_triton(x, disc, d_t, g_t, block_b=16 if B == 17 else 0, variant=variant)
    assert out.logits.shape == (B,) and out.d_loss.shape == ()
    assert [g.shape for g in out.d_grads] == [p.shape for p in disc.parameters()]
    assert_close(out, ref, TOL_IEEE, g_t)
    eager = disc_step_eager(x, disc, d_t, g_t)
    assert_close(eager, ref, TOL_IEEE, g_t)  # the eager path itself meets DESIGN.md §6
    assert rel_err(out.logits, eager.logits) <= 2 * TOL_IEEE
    if g_t is not None:
        assert out.g_grad.shape == x.shape
        assert rel_err(out.g_grad, eager.g_grad) <= 2 * TOL_IEEE


def test_non_contiguous_and_float64_input():
    disc = make_disc(5, (32,), "kernel", "ns")
    x = torch.randn(30, 5, 5, device=DEV).transpose(1, 2)  # non-contiguous view
    assert_close(disc_step_triton(x, disc, 0.0, 1.0), reference_step(x, disc, 0.0, 1.0),
                 TOL_IEEE, 1.0)
    out = disc_step_triton(x.double(), disc, 0.0, 1.0)
    assert out.g_grad.dtype == torch.float64  # like eager: grad in x's dtype


def test_flat_input_and_public_dispatch():
    disc = make_disc(5, (32,), "batch", "ns")
    x = torch.randn(24, 25, device=DEV)
    out = disc_step(x, disc, 0.0, 1.0, backend="triton")
    assert out.g_grad.shape == (24, 25)
    assert_close(out, reference_step(x, disc, 0.0, 1.0), TOL_IEEE, 1.0)


@pytest.mark.parametrize("d_target,bias", [(1.0, 1.0), (0.0, -1.0)])
def test_hinge_margin_subgradient_is_zero(d_target, bias):
    """Logits exactly at the hinge margin take relu'(0) = 0, like eager.

    Constant kernels normalize to exactly 0 under kernel norm; with zero hidden
    biases their logit is exactly the output bias, i.e. exactly +-1."""
    disc = make_disc(3, (32, 32), "kernel", "hinge")
    with torch.no_grad():
        for lin in disc.layers[:-1]:
            lin.bias.zero_()
        disc.layers[-1].bias.fill_(bias)
    torch.manual_seed(5)
    x = torch.randn(40, 3, 3, device=DEV)
    x[::3] = 0.5  # 14 constant kernels -> logit == bias exactly
    out = disc_step_triton(x, disc, d_target, 1.0)
    eager = disc_step_eager(x, disc, d_target, 1.0)
    at_margin = out.logits == bias
    assert at_margin.sum().item() == 14 and (eager.logits == bias).sum().item() == 14
    # d loss / d bias_o = -(# rows strictly inside the margin)/B for t=1 (+ for t=0)
    inside = (out.logits < 1) if d_target == 1.0 else (out.logits > -1)
    inside &= ~at_margin
    expect = (-1.0 if d_target == 1.0 else 1.0) * inside.sum().item() / 40
    assert out.d_grads[-1].item() == pytest.approx(expect, abs=1e-6)
    assert eager.d_grads[-1].item() == pytest.approx(expect, abs=1e-6)
    assert_close(out, reference_step(x, disc, d_target, 1.0), TOL_IEEE, 1.0)


@pytest.mark.parametrize("d_target,bias", [(0.0, -25.0), (1.0, 25.0), (1.0, 9.0)])
def test_ns_loss_with_saturated_logits(d_target, bias):
    """softplus(-|l|) ~ e^-25 must not round to 0 (log(1 + e) would): the D loss of a
    batch D already classifies confidently is tiny, not zero, to DESIGN.md §6 relative error."""
    disc = make_disc(5, (32,), "batch", "ns")
    with torch.no_grad():
        disc.layers[-1].weight.mul_(0.01)
        disc.layers[-1].bias.fill_(bias)
    x = torch.randn(50, 5, 5, device=DEV)
    ref = reference_step(x, disc, d_target, 1.0)
    assert 0 < float(ref["d_loss"]) < 1.5e-4
    assert_close(disc_step_triton(x, disc, d_target, 1.0), ref, TOL_IEEE, 1.0)


@pytest.mark.parametrize("variant", ["registers", "chunked"])
def test_deterministic_bitwise(variant):
    disc = make_disc(5, (32, 32), "batch", "ns")
    x = torch.randn(300, 5, 5, device=DEV)
    a = disc_step_triton(x, disc, 0.0, 1.0, block_b=32, num_programs=4, variant=variant)
    b = disc_step_triton(x, disc, 0.0, 1.0, block_b=32, num_programs=4, variant=variant)
    for u, v in zip([a.logits, a.d_loss, a.g_loss, a.g_grad, *a.d_grads],
                    [b.logits, b.d_loss, b.g_loss, b.g_grad, *b.d_grads]):
        assert torch.equal(u, v)


@pytest.mark.parametrize("variant", ["registers", "chunked"])
def test_grid_shape_does_not_change_result(variant):
    """1 program looping over every tile vs several programs + partial sum."""
    disc = make_disc(3, (32,), "batch", "hinge")
    x = torch.randn(200, 3, 3, device=DEV)
    ref = reference_step(x, disc, 1.0, 1.0)
    for n in (1, 3):
        out = disc_step_triton(x, disc, 1.0, 1.0, block_b=16, num_programs=n, variant=variant)
        assert_close(out, ref, TOL_IEEE, 1.0)


def test_reference_can_fail():
    """The comparison is not a tautology: a wrong slope is caught."""
    disc = make_disc(3, (32,), "batch", "ns")
    x = torch.randn(20, 3, 3, device=DEV)
    ref = reference_step(x, disc, 0.0, 1.0)
    disc.slope = 0.1
    with pytest.raises(AssertionError):
        assert_close(disc_step_triton(x, disc, 0.0, 1.0), ref, TOL_IEEE, 1.0)


@pytest.mark.parametrize("kw,tol", [({"precision": "tf32"}, TOL_TF32), ({"precision": "tf32x3"}, TOL_IEEE)])
def test_precision_options_run(kw, tol):
    """The tf32 / tf32x3 paths run (under the interpreter the dot stays fp32; CUDA tests
    check the real tensor-core error)."""
    disc = make_disc(5, (32, 32), "batch", "ns")
    x = torch.randn(40, 5, 5, device=DEV)
    assert_close(disc_step_triton(x, disc, 0.0, 1.0, **kw), reference_step(x, disc, 0.0, 1.0),
                 tol, 1.0)


def test_bad_arguments_raise():
    disc = make_disc(3, (16,), "kernel", "ns")
    with pytest.raises(ValueError, match="variant"):
        disc_step_triton(torch.randn(8, 3, 3, device=DEV), disc, variant="nope")
    with pytest.raises(ValueError, match="precision"):
        disc_step_triton(torch.randn(8, 3, 3, device=DEV), disc, precision="fp8")
    with pytest.raises(ValueError, match="empty"):
        disc_step_triton(torch.randn(0, 3, 3, device=DEV), disc)
    wide = make_disc(5, (16,), "batch", "ns", channels=64)               # 1600 inputs
    with pytest.raises(ValueError, match="up to 1024 inputs"):
        disc_step_triton(torch.randn(8, 64, 5, 5, device=DEV), wide)


# ------------------------------------------------------------ torch.library op
def _op_args(norm="batch", g_target=1.0):
    disc = make_disc(3, (32,), norm, "ns")
    x = torch.randn(20, 9, device=DEV)
    params = [p.detach() for p in disc.parameters()]
    return (x, params, norm, "ns", 0.2, 1e-5, 0.0, g_target, "ieee", 0, 0, "auto")


@pytest.mark.parametrize("norm,g_target", [("batch", 1.0), ("kernel", None)])
def test_opcheck(norm, g_target):
    torch.library.opcheck(torch.ops.fastreg.disc_step_fused.default, _op_args(norm, g_target))


def test_fake_impl_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    args = _op_args()
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        fx = mode.from_tensor(args[0])
        fp = [mode.from_tensor(p) for p in args[1]]
        logits, flat, g = torch.ops.fastreg.disc_step_fused(fx, fp, *args[2:])
    real = torch.ops.fastreg.disc_step_fused(*args)
    assert logits.shape == real[0].shape and flat.shape == real[1].shape and g.shape == real[2].shape


def test_compile_fullgraph_no_graph_break():
    disc = make_disc(5, (32, 32), "batch", "hinge")
    x = torch.randn(30, 5, 5, device=DEV)

    def step(x):
        o = disc_step_triton(x, disc, 0.0, 1.0)
        return (o.logits, o.d_loss, o.g_loss, o.g_grad, *o.d_grads)

    torch._dynamo.reset()
    got = torch.compile(step, fullgraph=True, backend="aot_eager")(x)
    want = step(x)
    for a, b in zip(got, want):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- CUDA shapes
# Sized for bench/gpu_check.sh (~200 s for all CUDA tests): each new (shape, norm, loss,
# G head, variant) is a fresh Triton compile of a large kernel, so the grid stays small.
SHAPES = {"S1": (384, 7), "S2": (32768, 5), "S3": (1 << 20, 3)}


def _cuda_case(B, k, hidden=(128, 128), norm="batch", loss="ns", targets=((0.0, 1.0),),
               tol=TOL_IEEE, channels=1, **kw):
    disc = make_disc(k, hidden, norm, loss, seed=k, channels=channels)
    x = torch.randn(B, *((channels,) if channels > 1 else ()), k, k, device="cuda")
    for d_t, g_t in targets:
        out = disc_step_triton(x, disc, d_t, g_t, **kw)
        assert_close(out, reference_step(x, disc, d_t, g_t), tol, g_t)


@pytest.mark.cuda
@pytest.mark.parametrize("shape", list(SHAPES))
def test_cuda_shapes_vs_reference(shape):
    """Both halves of a training step (fake with the G head, real without)."""
    _cuda_case(*SHAPES[shape], targets=((0.0, 1.0), (1.0, None)))


@pytest.mark.cuda
@pytest.mark.parametrize("B", [128, 4096])
def test_cuda_whole_filters(B):
    """A whole-filter D on conv1 (3x7x7 = 147 inputs): the chunked kernel, both halves."""
    _cuda_case(B, 7, channels=3, targets=((0.0, 1.0), (1.0, None)))


@pytest.mark.cuda
def test_cuda_kernel_norm_hinge():
    _cuda_case(*SHAPES["S2"], norm="kernel", loss="hinge", targets=((0.0, 1.0), (1.0, None)))


@pytest.mark.cuda
def test_cuda_chunked_variant():
    _cuda_case(*SHAPES["S2"], variant="chunked")


@pytest.mark.cuda
def test_cuda_tf32():
    _cuda_case(*SHAPES["S2"], tol=TOL_TF32, precision="tf32")


@pytest.mark.cuda
def test_cuda_tf32x3_meets_fp32_tolerance():
    _cuda_case(*SHAPES["S3"], precision="tf32x3")


@pytest.mark.cuda
@pytest.mark.parametrize("k,hidden", [(3, (256, 256)), (11, (128, 128, 128)), (3, (16, 16, 16))])
def test_cuda_widths(k, hidden):
    """(256, 256) runs the chunked kernel (auto); the others the register one."""
    _cuda_case(5000, k, hidden)


@pytest.mark.cuda
@pytest.mark.parametrize("variant", ["registers", "chunked"])
def test_cuda_deterministic_s3(variant):
    B, k = SHAPES["S3"]
    disc = make_disc(k, (128, 128), "batch", "ns", seed=k)
    x = torch.randn(B, k, k, device="cuda")
    a = disc_step_triton(x, disc, 0.0, 1.0, variant=variant)
    b = disc_step_triton(x, disc, 0.0, 1.0, variant=variant)
    for u, v in zip([a.g_grad, *a.d_grads], [b.g_grad, *b.d_grads]):
        assert torch.equal(u, v)
