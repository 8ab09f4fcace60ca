"""The lab tests' shared fixture: one small sweep (baseline and adv1, two seeds) that the report
tests copy and reshape."""
import pytest

from fastreg.lab import sweep
from fastreg.lab.cli import run_main
from helpers import make_bank_file, make_npz_data

TRAIN = ["--eval-size", "50", "--batch-size", "50"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    data = make_npz_data(tmp / "data")
    bank = make_bank_file(tmp / "bank.safetensors")
    base = ["--sizes", "20", "--methods", "baseline,adv1", "--seeds", "0,1", "--width", "0.125",
            "--epochs", "2", "--data-root", str(data), "--bank", str(bank), "--device", "cpu"]
    out = tmp / "runs"
    assert run_main(sweep.main, base + ["--out", str(out), "--", *TRAIN]) == 0
    return tmp, data, bank, base, out
