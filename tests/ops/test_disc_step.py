"""backend='auto': eager on CPU; on CUDA Triton only after its one-time self-test passes."""
import importlib
import warnings

import pytest

ds = importlib.import_module("fastreg.ops.disc_step")  # the module, not the function


def test_auto_is_eager_on_cpu():
    assert ds.resolve_backend("auto", "cpu") == "eager"
    assert ds.resolve_backend("triton", "cpu") == "triton"
    with pytest.raises(ValueError):
        ds.resolve_backend("fast", "cpu")


def test_auto_leaves_widths_the_fused_step_does_not_serve_to_eager(monkeypatch):
    from fastreg import Discriminator
    monkeypatch.setattr(ds, "triton_self_test", lambda device: True)   # as on a GPU that passed
    monkeypatch.setattr(ds.torch, "device", lambda d: type("D", (), {"type": "cuda"})())
    assert ds.resolve_backend("auto", "cuda", Discriminator(7, channels=3)) == "triton"       # 147 inputs
    assert ds.resolve_backend("auto", "cuda", Discriminator(5, channels=64)) == "eager"       # 1600 inputs
    assert ds.resolve_backend("auto", "cuda", Discriminator(5, (8,) * 4)) == "eager"          # 4 hidden layers


def test_self_test_passes_under_interpreter(monkeypatch):
    monkeypatch.setattr(ds, "_SELF_TEST", {})
    assert ds.triton_self_test("cpu") is True


def test_self_test_rejects_a_wrong_kernel(monkeypatch):
    from fastreg.ops import disc_step_triton as triton_disc
    real = triton_disc.disc_step_triton

    def off_by_a_bit(*a, **k):
        out = real(*a, **k)
        return out._replace(g_grad=out.g_grad * 1.01)

    monkeypatch.setattr(ds, "_SELF_TEST", {})
    monkeypatch.setattr(triton_disc, "disc_step_triton", off_by_a_bit)
    with pytest.warns(UserWarning, match="disagrees"):
        assert ds.triton_self_test("cpu") is False

    def broken(*a, **k):
        raise RuntimeError("no kernel image for this device")

    monkeypatch.setattr(ds, "_SELF_TEST", {})
    monkeypatch.setattr(triton_disc, "disc_step_triton", broken)
    with pytest.warns(UserWarning, match="unavailable"):
        assert ds.triton_self_test("cpu") is False


@pytest.mark.cuda
def test_auto_picks_triton_on_cuda_without_a_warning(monkeypatch):
    """On a real GPU the self-test must pass: a silent fallback to eager would keep every
    other test green while training never used the fused step."""
    monkeypatch.setattr(ds, "_SELF_TEST", {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # a fallback warning fails the test
        assert ds.resolve_backend("auto", "cuda") == "triton"
