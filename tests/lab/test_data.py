"""Source/target split, stratified reduced sets, on-device augmentation."""
import warnings

import numpy as np
import pytest
import torch

from fastreg.lab.cli import UsageError
from fastreg.lab.data import (augment, load_arrays, split_target_source, stratified_subset, target_sets,
                          to_device_tensor)
from helpers import make_npz_data


def _labels(per=50, classes=10):
    return np.repeat(np.arange(classes), per)


def test_split_disjoint_stratified_and_fixed():
    y = _labels(500)
    pool, src = split_target_source(y)
    assert np.intersect1d(pool, src).size == 0
    assert pool.size + src.size == y.size
    assert np.bincount(y[pool]).tolist() == [100] * 10      # 20 % of each class
    pool2, _ = split_target_source(y)
    assert np.array_equal(pool, pool2)
    pool3, _ = split_target_source(y, seed=1)
    assert not np.array_equal(pool, pool3)


def test_subset_stratified_reproducible_within_pool():
    y = _labels(500)
    pool, src = split_target_source(y)
    a = stratified_subset(pool, y, 100, 10, seed=3)
    b = stratified_subset(pool, y, 100, 10, seed=3)
    c = stratified_subset(pool, y, 100, 10, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(y[a], minlength=10).tolist() == [10] * 10
    assert np.isin(a, pool).all() and not np.isin(a, src).any()
    assert len(set(a.tolist())) == 100


def test_subset_bad_sizes():
    y = _labels(500)
    pool, _ = split_target_source(y)
    with pytest.raises(UsageError, match="divisible"):
        stratified_subset(pool, y, 105, 10, 0)
    with pytest.raises(UsageError, match="pool"):
        stratified_subset(pool, y, 1010, 10, 0)


def test_augment_is_a_crop_or_flipped_crop():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32)
    out = augment(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    pad = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    flips = 0
    for i in range(x.shape[0]):
        hits = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)
                if torch.equal(out[i], (pad[i, :, dy:dy + 32, dx:dx + 32].flip(2) if f
                                        else pad[i, :, dy:dy + 32, dx:dx + 32]))]
        assert hits, f"image {i} is not a crop of the padded input"
        flips += hits[0][2]
    assert 10 < flips < 54                                   # both branches used
    again = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_npz_loading_and_target_sets(tmp_path):
    root = make_npz_data(tmp_path / "d")
    x, y = load_arrays("cifar10", root, "train")
    assert x.shape == (500, 32, 32, 3) and x.dtype == np.uint8
    train, test, nc = target_sets(root, 50, 0, "cpu")
    assert nc == 10 and train.x.shape == (50, 3, 32, 32) and test.x.shape[0] == 100
    assert abs(float(train.x.mean())) < 3                    # normalized
    pool, src = split_target_source(y)
    assert np.isin(train.index, pool).all()


def test_missing_data_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTREG_OFFLINE", "1")
    with pytest.raises(UsageError, match="no cifar10 train data"):
        load_arrays("cifar10", tmp_path, "train")
    with pytest.raises(UsageError, match="unknown dataset"):
        load_arrays("mnist", tmp_path, "train")


def test_corrupt_npz(tmp_path):
    (tmp_path / "cifar10_train.npz").write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="not a readable"):
        load_arrays("cifar10", tmp_path, "train")


def test_npz_cache_reuses_and_notices_a_replaced_file(tmp_path):
    root = make_npz_data(tmp_path / "d")
    x1, y1 = load_arrays("cifar10", root, "train")
    x2, y2 = load_arrays("cifar10", root, "train")
    assert x2 is x1 and y2 is y1                     # second read comes from the cache
    assert not x1.flags.writeable and not y1.flags.writeable
    with pytest.raises(ValueError):
        x1[0, 0, 0, 0] = 1                           # a run cannot change the next run's data
    path = root / "cifar10_train.npz"
    new = np.full_like(np.asarray(x1), 7)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=new, labels=np.asarray(y1))
    tmp.replace(path)                                # new inode, as an atomic rewrite does
    x3, _ = load_arrays("cifar10", root, "train")
    assert x3 is not x1 and (x3 == 7).all()


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_device_tensor_copies_a_read_only_cached_array(dtype):
    a = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)).astype(dtype)
    a.flags.writeable = False                        # as load_arrays hands them out
    before = a.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")               # no "non-writable array" aliasing
        x = to_device_tensor(a, "cpu")
    assert np.array_equal(a, before)                 # the normalization did not write into it
    x.add_(1.0)
    assert np.array_equal(a, before) and x.shape == (4, 3, 8, 8)


def test_data_pack_same_subsets_and_refuses_missing_rows(tmp_path, capsys):
    from fastreg import pack
    from fastreg.lab.cli import run_main
    root = make_npz_data(tmp_path / "d")
    out = tmp_path / "pack"
    assert run_main(pack.main, ["--data-root", str(root), "--sizes", "20", "--seeds", "0,1",
                                "--out", str(out)]) == 0
    with np.load(out / "cifar10_train.npz") as d:
        present = d["present"]
    assert 20 <= present.sum() <= 40                        # the union of two 20-image subsets
    for seed in (0, 1):
        full_tr, full_te, _ = target_sets(root, 20, seed, "cpu")
        pk_tr, pk_te, _ = target_sets(out, 20, seed, "cpu")
        assert np.array_equal(full_tr.index, pk_tr.index)
        assert torch.equal(full_tr.x, pk_tr.x) and torch.equal(full_te.x, pk_te.x)
    with pytest.raises(UsageError, match="data pack without"):  # not packed: zeros, refused
        target_sets(out, 20, 7, "cpu")
    capsys.readouterr()
    assert run_main(pack.main, ["--data-root", str(root), "--out", str(root)]) == 2
    assert run_main(pack.main, ["--data-root", str(root), "--sizes", "15", "--out", str(tmp_path / "p2")]) == 2
    assert not (tmp_path / "p2" / "cifar10_train.npz").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
