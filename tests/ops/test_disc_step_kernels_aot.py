"""The fused disc-step kernels compile for an H100 (sm_90) on a machine without a GPU.

Why: the interpreter tests check the math, not that ptxas accepts the kernels at
the CUDA tile sizes, or that they fit the SM's shared memory and register file.
Runs ``bench/aot_compile.py`` in a subprocess (it needs TRITON_INTERPRET unset).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _aot(tmp_path: Path, *args: str) -> tuple[int, list, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("OMP_NUM_THREADS", "1")
    out = tmp_path / "aot.json"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "aot_compile.py"), "--json",
                        str(out), *args], env=env, capture_output=True, text=True, timeout=600)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    return p.returncode, rows, p.stdout + p.stderr


def test_s1_kernels_compile_for_sm90(tmp_path):
    rc, rows, log = _aot(tmp_path, "--only", "S1-bn-ns-G")
    assert rc == 0, log
    names = sorted(r["kernel"] for r in rows)
    assert names == ["_bn_dx_kernel", "_bn_stats_kernel", "_disc_main_kernel"], log
    for r in rows:
        assert r["ok"] and "error" not in r, r
        assert r["regs"] is not None and 0 < r["regs"] <= 255, r  # cuobjdump read the cubin
        assert 0 <= r["shared"] <= 227 * 1024, r
    # the instruction hash (for refactor checks) tells different kernels apart
    hashes = {r["sass_sha"] for r in rows}
    assert len(hashes) == 3 and all(len(h) == 12 for h in hashes), log


def test_whole_filter_kernels_compile_for_sm90(tmp_path):
    """A whole-filter D on conv1 (147 inputs, padded to 256) runs the chunked kernel."""
    rc, rows, log = _aot(tmp_path, "--only", "S1f-bn-ns-G")
    assert rc == 0, log
    assert sorted(r["kernel"] for r in rows) == ["_bn_dx_kernel", "_bn_stats_kernel", "_disc_chunked_kernel"]
    assert all(r["ok"] and 0 <= r["shared"] <= 227 * 1024 for r in rows), log


def test_register_file_overflow_is_reported(tmp_path):
    # 16 warps x 255 registers needs twice the 64K-register file: must be flagged.
    rc, rows, log = _aot(tmp_path, "--only", "S1-bn-ns-G", "--kernel", "main",
                         "--set", "num_warps=16")
    assert rc == 1, log
    assert len(rows) == 1 and rows[0]["ok"] is False and rows[0]["regs"] * 512 > 65536, log
