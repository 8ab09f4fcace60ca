"""fastreg/ops/tolerance.py: the error metric of DESIGN.md §6 that every op test and the fused
step's runtime self-test judge by. It must see a wrong shape, a NaN and the worst output."""
import math

import pytest
import torch

from fastreg.ops.disc_step_eager import DiscStepOutput
from fastreg.ops.tolerance import max_rel_err, rel_err


def test_rel_err_is_the_normwise_relative_error_in_float64():
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(7, 5, generator=g, dtype=torch.float64)
    err = 1e-3 * torch.randn(7, 5, generator=g, dtype=torch.float64)
    want = float(err.norm() / ref.norm())
    assert rel_err((ref + err).float(), ref) == pytest.approx(want, rel=1e-3)   # float32 out, float64 ref
    assert rel_err(ref, ref) == 0.0
    assert rel_err(err, torch.zeros_like(ref)) == pytest.approx(float(err.norm()))   # a zero reference: plain norm


def test_rel_err_refuses_shapes_that_would_broadcast_and_sees_non_finite():
    ref = torch.randn(4, 3)
    with pytest.raises(ValueError, match="shapes differ"):
        rel_err(ref[:1], ref)
    bad = ref.clone()
    bad[2, 1] = float("nan")
    assert rel_err(bad, ref) == math.inf
    bad[2, 1] = float("inf")
    assert rel_err(bad, ref) == math.inf


def _out(g: torch.Generator, head: bool) -> DiscStepOutput:
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return DiscStepOutput(r(8), r(()), (r(4, 3), r(4)), r(()) if head else None, r(8, 3) if head else None)


@pytest.mark.parametrize("where", ["logits", "d_loss", "d_grads", "g_loss", "g_grad"])
def test_max_rel_err_is_the_worst_output(where):
    g = torch.Generator().manual_seed(1)
    ref = _out(g, head=True)
    out = ref._replace(**{where: tuple(t.clone() for t in ref.d_grads) if where == "d_grads"
                          else getattr(ref, where).clone()})
    if where == "d_grads":
        out.d_grads[1].mul_(1.5)              # 50 % off in one gradient
    else:
        getattr(out, where).mul_(1.5)
    assert max_rel_err(out, ref) == pytest.approx(0.5)
    no_head = ref._replace(g_loss=None, g_grad=None)      # without a G head, only D's outputs count
    assert max_rel_err(out, no_head) == (pytest.approx(0.5) if where not in ("g_loss", "g_grad") else 0.0)
