"""``python -m fastreg.pack``: a small CIFAR-10 copy holding only the images a sweep needs.

Why: a remote GPU machine may see only the files carried to it (64 MiB per call on ours);
the full training npz is 142 MB. A pack keeps every label (so the
source/target split and the stratified subsets are the same indices) and the
images of the union of the planned subsets; other rows are zeros, marked absent in
a ``present`` mask that the loader checks, so a run that needs a missing image is
refused instead of training on zeros. The test set is copied whole.
"""
from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np

from .cli import Parser, int_list
from .data import DATASETS, data_root, load_arrays, npz_path, split_target_source, stratified_subset
from ..errors import UsageError
from ..io_util import atomic_write_bytes, check_out_dir


def build_parser() -> Parser:
    p = Parser(prog="python -m fastreg.pack", description=__doc__.splitlines()[0].split(": ", 1)[-1])
    p.add_argument("--sizes", default="100,500,1000", help="comma-separated train sizes")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (data seed = seed)")
    p.add_argument("--data-root", default=None, help="full data folder (default: $FASTREG_DATA or ./data)")
    p.add_argument("--out", required=True, help="folder for the pack (use it as --data-root)")
    return p


def needed_rows(labels: np.ndarray, sizes: Sequence[int], seeds: Sequence[int]) -> np.ndarray:
    """Boolean mask of the training rows any (size, seed) subset uses."""
    pool, _ = split_target_source(labels)
    present = np.zeros(len(labels), dtype=bool)
    for n in sizes:
        for s in seeds:
            present[stratified_subset(pool, labels, n, DATASETS["cifar10"], s)] = True
    return present


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    sizes = int_list(a.sizes, "--sizes", 1)
    seeds = int_list(a.seeds, "--seeds", 0)
    src, out = data_root(a.data_root), Path(a.out)
    if out.resolve() == src.resolve():
        raise UsageError("--out must differ from --data-root")
    check_out_dir(out)
    x, y = load_arrays("cifar10", src, "train")
    present = needed_rows(y, sizes, seeds)
    packed = np.zeros_like(x)
    packed[present] = x[present]
    test = npz_path(src, "cifar10", "test")
    if not test.exists():
        raise UsageError(f"no {test.name} in {src}: a pack is made from the npz data")
    load_arrays("cifar10", src, "test")  # validates it before copying
    buf = io.BytesIO()
    np.savez_compressed(buf, images=packed, labels=y, present=present)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(npz_path(out, "cifar10", "train"), buf.getvalue())
    tmp = out / f".{test.name}.tmp"
    shutil.copyfile(test, tmp)
    tmp.replace(npz_path(out, "cifar10", "test"))
    mb = sum(npz_path(out, "cifar10", s).stat().st_size for s in ("train", "test")) / 2**20
    print(f"pack {out}: {int(present.sum())} of {len(y)} training images (sizes {sizes}, "
          f"seeds {seeds}) + the test set, {mb:.1f} MiB")
    return 0

