"""A run's settings have one owner (fastreg/lab/settings.py): the loop's settings train records
are LoopConfig's own defaults (so collect and train train alike), every recorded config
carries them and its version, and an old config upgrades to what its run used."""
import dataclasses

from fastreg.lab.loop import LoopConfig
from fastreg.lab.settings import LOOP, VERSION, build_parser, config_of, settings_diff, upgrade


def test_recorded_loop_settings_are_the_loops_defaults():
    defaults = {f.name: f.default for f in dataclasses.fields(LoopConfig)}
    assert set(LOOP) <= set(defaults)
    assert {k: defaults[k] for k in LOOP} == LOOP


def test_config_records_loop_and_version_and_old_configs_upgrade():
    a = build_parser().parse_args(["--train-size", "100", "--out", "x"])
    cfg = config_of(a)
    assert cfg["loop"] == LOOP and cfg["settings_version"] == VERSION
    assert "out" not in cfg and "resume" not in cfg
    old = {k: v for k, v in cfg.items() if k not in ("loop", "settings_version", "classes", "sources")}
    up = upgrade(old)
    assert up["loop"] == LOOP and up["classes"] is None and up["sources"] is None
    assert settings_diff(old, cfg) == []
    assert settings_diff(old, {**cfg, "loop": {**LOOP, "warmup": 0.0}}) == ["loop"]


def test_the_learning_rate_schedule_and_warmup_are_settings_the_loop_records():
    """``--lr-schedule linear --warmup 0`` (the Deep Weight Prior's schedule) reach the recorded
    loop, and a run with them differs from a default run in exactly those settings."""
    parse = lambda *x: config_of(build_parser().parse_args(["--train-size", "100", "--out", "x", *x]))  # noqa: E731
    cfg, lin = parse(), parse("--lr-schedule", "linear", "--warmup", "0")
    assert lin["loop"] == {**LOOP, "schedule": "linear", "warmup": 0.0}
    assert settings_diff(cfg, lin) == ["loop", "lr_schedule", "warmup"]
    old = {k: v for k, v in cfg.items() if k not in ("lr_schedule", "warmup")}   # recorded before the options
    assert settings_diff(old, cfg) == []
