"""Eager disc_step (DESIGN.md §3) against an independent float64 reference (DESIGN.md §6: 1e-4)."""
import itertools

import pytest
import torch

from fastreg import Discriminator
from fastreg.ops import disc_step
from reference import randomize_disc, reference_step, rel_err

TOL = 1e-4
CASES = list(itertools.product((2, 17, 384), (3, 5, 7), ("batch", "kernel"), ("ns", "hinge")))


@pytest.mark.parametrize("B,k,norm,loss", CASES)
@pytest.mark.parametrize("d_target", (0.0, 1.0))
def test_eager_matches_float64(B, k, norm, loss, d_target):
    torch.manual_seed(B * 100 + k)
    disc = Discriminator(k, (32, 16), norm=norm, loss=loss)
    randomize_disc(disc, seed=k)
    x = torch.randn(B, k, k) * 0.3 + 0.05
    out = disc_step(x, disc, d_target=d_target, g_target=1.0, backend="eager")
    ref = reference_step(x, disc, d_target, 1.0)
    assert out.logits.shape == (B,) and out.g_grad.shape == x.shape
    assert rel_err(out.logits, ref["logits"]) < TOL
    assert rel_err(out.d_loss, ref["d_loss"]) < TOL
    assert rel_err(out.g_loss, ref["g_loss"]) < TOL
    assert rel_err(out.g_grad, ref["g_grad"]) < TOL
    assert len(out.d_grads) == len(list(disc.parameters()))
    for g, r, p in zip(out.d_grads, ref["d_grads"], disc.parameters()):
        assert g.shape == p.shape
        assert rel_err(g, r) < TOL


def test_error_helper_refuses_shape_mismatch_and_non_finite():
    """rel_err must not let broadcasting hide a wrong shape, nor NaN pass."""
    with pytest.raises(ValueError, match="shapes differ"):
        rel_err(torch.ones(4, 1), torch.ones(4))
    assert rel_err(torch.tensor([float("nan")]), torch.ones(1)) == float("inf")
    assert rel_err(torch.ones(3), torch.ones(3)) == 0.0


def test_flat_input_and_no_generator_head():
    disc = Discriminator(5, (16,))
    randomize_disc(disc, 3)
    x = torch.randn(9, 25)
    out = disc_step(x, disc, d_target=1.0, g_target=None, backend="eager")
    assert out.g_loss is None and out.g_grad is None
    ref = reference_step(x, disc, 1.0, None)
    assert rel_err(out.d_loss, ref["d_loss"]) < TOL


def test_ns_soft_target():
    disc = Discriminator(3, (16,))
    randomize_disc(disc, 4)
    x = torch.randn(11, 3, 3)
    out = disc_step(x, disc, d_target=0.9, g_target=1.0, backend="eager")
    ref = reference_step(x, disc, 0.9, 1.0)
    assert rel_err(out.d_loss, ref["d_loss"]) < TOL
    for g, r in zip(out.d_grads, ref["d_grads"]):
        assert rel_err(g, r) < TOL


def test_whole_filter_shapes_and_refusals():
    disc = Discriminator(5, (16,), channels=4)
    assert disc.dim == 100
    randomize_disc(disc, 2)
    x = torch.randn(9, 4, 5, 5)
    out = disc_step(x, disc, 0.0, 1.0, backend="eager")
    assert out.g_grad.shape == x.shape
    assert rel_err(out.g_grad, reference_step(x, disc, 0.0, 1.0)["g_grad"]) < TOL
    for bad in (torch.randn(9, 5, 5), torch.randn(9, 3, 5, 5), torch.randn(9, 99)):
        with pytest.raises(ValueError):
            disc_step(bad, disc, 0.0, 1.0, backend="eager")
    with pytest.raises(ValueError):
        Discriminator(5, channels=0)


def test_parameter_order_is_spec():
    d = Discriminator(7, (128, 64), norm="batch")
    shapes = [tuple(p.shape) for p in d.parameters()]
    assert shapes == [(49,), (49,), (128, 49), (128,), (64, 128), (64,), (1, 64), (1,)]
    d = Discriminator(7, (128,), norm="kernel")
    assert [tuple(p.shape) for p in d.parameters()] == [(128, 49), (128,), (1, 128), (1,)]


@pytest.mark.parametrize("bad", [
    dict(x=torch.randn(4, 5, 5), k=7),            # wrong kernel size
    dict(x=torch.randn(1, 7, 7), k=7),            # batch norm on one kernel
    dict(x=torch.randn(4, 7), k=7),               # wrong flat width
    dict(x=torch.randint(0, 3, (4, 7, 7)), k=7),  # integer input
])
def test_bad_input_raises(bad):
    with pytest.raises(ValueError):
        disc_step(bad["x"], Discriminator(bad["k"]), backend="eager")


def test_bad_targets_and_backend():
    d = Discriminator(3, loss="hinge")
    x = torch.randn(4, 3, 3)
    with pytest.raises(ValueError):
        disc_step(x, d, d_target=0.5, backend="eager")
    with pytest.raises(ValueError):
        disc_step(x, Discriminator(3), d_target=1.5, backend="eager")
    with pytest.raises(ValueError):
        disc_step(x, d, backend="cuda-magic")


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_input_dtype_is_cast_to_d(dtype):
    """Any float ``x`` runs in D's dtype (as the fused path does, so ``auto`` behaves the same
    on CPU and CUDA); ``g_grad`` comes back in ``x``'s dtype."""
    torch.manual_seed(0)
    disc = Discriminator(5, (32,), "batch", "ns")
    randomize_disc(disc)
    x = torch.randn(20, 5, 5).to(dtype)
    out = disc_step(x, disc, 0.0, 1.0, backend="eager")
    ref = disc_step(x.float(), disc, 0.0, 1.0, backend="eager")
    assert out.g_grad.dtype == dtype
    assert torch.equal(out.logits, ref.logits) and torch.equal(out.d_loss, ref.d_loss)
    assert all(torch.equal(a, b) for a, b in zip(out.d_grads, ref.d_grads))
    assert torch.equal(out.g_grad, ref.g_grad.to(dtype))
