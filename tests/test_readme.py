"""The README's example runs as written, so it cannot rot: it is extracted from README.md,
given a user's model and loader, and must train both the model and the discriminator."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The first ```python block under '## Use it in your own training loop'."""
    section = README.read_text().split("## Use it in your own training loop", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


class UserCNN(nn.Module):
    """A model fastreg has never seen: 7×7 conv1, then a head of its own."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 7)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv1(x))


def test_readme_example_is_short():
    assert len(readme_example().strip().splitlines()) <= 15


def test_readme_example_runs():
    torch.manual_seed(0)
    model = UserCNN()
    g = torch.Generator().manual_seed(1)
    loader = [(torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g))
              for _ in range(3)]
    w0 = model.conv1.weight.detach().clone()
    ns = {"model": model, "loader": loader}
    exec(compile(readme_example(), str(README), "exec"), ns)
    reg = ns["reg"]
    assert int(reg.step) == 3                                  # one D update per batch
    assert not torch.equal(model.conv1.weight, w0)
    for p in reg.discs["conv1"].parameters():                 # D's optimizer stepped every batch
        assert int(reg.opt.state[p]["step"]) == 3
