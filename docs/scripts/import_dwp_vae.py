"""Convert one of the Deep Weight Prior's trained kernel VAEs (``data/fconv/vae7x7`` or
``vae5x5/vae_params.torch`` in SamsungLabs/deep-weight-prior) to a fastreg conv-VAE file
(``fastreg.vae_conv``, DESIGN.md §15), read with the restricted loader (tensors only).

    python docs/scripts/import_dwp_vae.py vae_params.torch 7 runs/dwpvae/vae7x7.safetensors

The sizes are DWP's: 7×7 hidden 32, z 2; 5×5 hidden 64, z 4. The file records the source's
name and SHA-256.
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

from safetensors.torch import save

from fastreg.io_util import atomic_write_bytes, safe_torch_load
from fastreg.vae_conv import FORMAT, ConvKernelVAE

SIZES = {7: (32, 2), 5: (64, 4)}
RENAME = [(r"^encoder\.features\.", "enc."), (r"^encoder\.fc_mu\.", "enc_mu."),
          (r"^encoder\.fc_(var|sigma)\.", "enc_var."), (r"^decoder\.decoder\.", "dec."),
          (r"^decoder\.fc_mu\.(0\.)?", "dec_mu."), (r"^decoder\.fc_var\.(0\.)?", "dec_var.")]


def convert(src: Path, k: int) -> tuple[ConvKernelVAE, dict]:
    state = {}
    for key, v in safe_torch_load(src).items():
        new = key
        for pat, rep in RENAME:
            new = re.sub(pat, rep, new)
        state[new] = v.float()
    vae = ConvKernelVAE(k, *SIZES[k])
    vae.load_state_dict(state)     # strict: every tensor placed, none left over
    meta = {"format": FORMAT, **{a: str(b) for a, b in vae.describe().items()},
            "source": f"SamsungLabs/deep-weight-prior data/fconv/vae{k}x{k}/vae_params.torch",
            "source_sha256": hashlib.sha256(src.read_bytes()).hexdigest()}
    return vae, meta


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("5", "7"):
        sys.stderr.write("usage: import_dwp_vae.py VAE_PARAMS.torch {5|7} OUT.safetensors\n")
        return 2
    vae, meta = convert(Path(argv[0]), int(argv[1]))
    atomic_write_bytes(argv[2], save({k: v.contiguous() for k, v in vae.state_dict().items()}, meta))
    print(f"{argv[2]}: DWP's {argv[1]}x{argv[1]} VAE, source sha256 {meta['source_sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
