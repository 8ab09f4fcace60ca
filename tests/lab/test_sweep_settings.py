"""A sweep rerun checks its finished runs against the settings as train records them."""
import pytest

from fastreg.errors import UsageError
from fastreg.io_util import atomic_write_json
from fastreg.lab import sweep
from fastreg.lab.settings import build_parser, config_of, resolve_defaults


def test_sweep_resume_compares_settings_as_train_records_them(tmp_path):
    """A rerun of a class-disjoint sweep finds its finished runs the same (classes typed as
    ``5,6,7,8,9``, recorded as a list); other classes are other settings."""
    argv = ["--train-size", "20", "--classes", "5,6,7,8,9", "--out", str(tmp_path), "--bank", "none"]
    a = build_parser().parse_args(argv)
    resolve_defaults(a)                                          # what train does before recording
    atomic_write_json(tmp_path / "config.json", config_of(a))
    sweep._check_same(tmp_path, argv)                            # the same run: no error
    with pytest.raises(UsageError, match="classes"):
        sweep._check_same(tmp_path, [*argv[:2], "--classes", "dog,cat", *argv[4:]])
