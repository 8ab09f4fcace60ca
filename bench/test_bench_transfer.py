"""What starting a network from another's weights costs (DESIGN.md §14): it runs once, before
training, so it is timed against one plain training step of the target. Group
``init-transfer``: a CIFAR ResNet-56 at width 1.5, batch 100 of 3×32×32, one AdamW step
(``plain``); building it with its own init (``own-init``); and starting it from a
ResNet-20 at width 1 (``transfer``: identity blocks for the depth, Net2WiderNet channels for
the width). On CUDA the step runs there; the init works on state dicts on the CPU either way.
"""
from __future__ import annotations

import pytest
import torch

from fastreg.models import build_model
from fastreg.transfer import transfer_init
from step_helper import make_train_step

HAS_CUDA = torch.cuda.is_available()
DEV = "cuda" if HAS_CUDA else "cpu"
TARGET, WIDTH = "resnet56", 1.5

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return build_model("resnet20").state_dict()


@pytest.mark.parametrize("variant", ["plain", "own-init", "transfer"])
def test_transfer_init(benchmark, variant, source):
    benchmark.group = "init-transfer"
    benchmark.extra_info.update(impl=variant, device=DEV, threads=torch.get_num_threads())
    rounds = 20 if HAS_CUDA else 5
    if variant == "plain":
        torch.manual_seed(0)
        model = build_model(TARGET, width=WIDTH).to(DEV)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        x, y = torch.randn(100, 3, 32, 32, device=DEV), torch.randint(0, 10, (100,), device=DEV)
        step = make_train_step(model, opt, x, y, bf16=HAS_CUDA)
        loss = benchmark.pedantic(lambda: float(step()), rounds=rounds, warmup_rounds=1, iterations=1)
        assert torch.isfinite(torch.tensor(loss))
        return

    def start() -> torch.nn.Module:
        model = build_model(TARGET, width=WIDTH)
        if variant == "transfer":
            transfer_init(model, [source], quiet=True)
        return model

    model = benchmark.pedantic(start, rounds=rounds, warmup_rounds=1, iterations=1)
    w = model.conv1.weight.detach()
    # the transfer copies the source's stem into the wider target (Net2WiderNet: channel j ← j mod 16)
    copied = torch.equal(w[:16], source["conv1.weight"]) and torch.equal(w[16:], source["conv1.weight"][:w.shape[0] - 16])
    assert copied == (variant == "transfer")
