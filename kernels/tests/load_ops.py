"""ctest smoke test: the CMake-built library registers torch.ops.fastreg.* and matches philox.py."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "fastreg", "ops"))
from philox import sample_indices_torch  # noqa: E402  (plain module: no fastreg import needed)

torch.ops.load_library(sys.argv[1])
bank = torch.randn(1000, 5, 5)
k, i = torch.ops.fastreg.sample_kernels(bank, 4096, -3, 2**40)
assert torch.equal(i, sample_indices_torch(4096, 1000, -3, 2**40)), "indices differ from philox.py"
assert torch.equal(k, bank[i]), "kernels != bank[idx]"
print("OK")
