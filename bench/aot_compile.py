"""Compile the fused disc-step kernels for a GPU target without a GPU (sm_90 default).

Why: a kernel that does not compile for the card should fail here, before any GPU time
is spent, and the GPU machine may run another Triton (3.6) than this one (3.8). This records the exact launches ``disc_step_triton.launch`` would make on an
H100 (CUDA tile sizes, grid, ``maxnreg``), compiles each with ``triton.compile``
for the target, and reports registers / spills / shared memory read from the
cubin with ``cuobjdump`` (when installed). A kernel that does not compile, or
needs more shared memory than the card has, exits 1.

    python bench/aot_compile.py [--arch 90] [--sm-count 132] [--json out.json]
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    sys.exit("aot_compile: unset TRITON_INTERPRET (it needs real JITFunctions)")

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastreg import Discriminator  # noqa: E402
from fastreg.ops import disc_step_triton as T  # noqa: E402

SMEM_LIMIT = {90: 227 * 1024, 80: 163 * 1024, 89: 99 * 1024, 86: 99 * 1024}
LAUNCH_OPTS = ("num_warps", "num_stages", "maxnreg", "num_ctas")
REGFILE = 64 * 1024  # 32-bit registers per SM (sm_70 .. sm_90)

# (name, B, k, hidden, norm, loss, g_target, precision, variant[, channels: whole filters])
CASES = [
    ("S1-bn-ns-G", 384, 7, (128, 128), "batch", "ns", 1.0, "ieee", "auto"),
    ("S1-bn-ns-D", 384, 7, (128, 128), "batch", "ns", None, "ieee", "auto"),
    ("S2-bn-ns-G", 32768, 5, (128, 128), "batch", "ns", 1.0, "ieee", "auto"),
    ("S2-kn-hinge-G", 32768, 5, (128, 128), "kernel", "hinge", 1.0, "ieee", "auto"),
    ("S2-bn-tf32", 32768, 5, (128, 128), "batch", "ns", 1.0, "tf32", "auto"),
    ("S2-bn-chunked", 32768, 5, (128, 128), "batch", "ns", 1.0, "ieee", "chunked"),
    ("S3-bn-ns-G", 1 << 20, 3, (128, 128), "batch", "ns", 1.0, "ieee", "auto"),
    ("S3-bn-tf32x3", 1 << 20, 3, (128, 128), "batch", "ns", 1.0, "tf32x3", "auto"),
    ("k11-w256-L3", 4096, 11, (256, 256, 256), "batch", "ns", 1.0, "ieee", "auto"),
    ("k3-w16-L1", 4096, 3, (16,), "kernel", "ns", 1.0, "ieee", "auto"),
    ("S1f-bn-ns-G", 128, 7, (128, 128), "batch", "ns", 1.0, "ieee", "auto", 3),      # conv1 filters
    ("f800-bn-ns-G", 128, 5, (128, 128), "batch", "ns", 1.0, "ieee", "auto", 32),    # 32x5x5 filters
]


class _Recorder:
    """Stands in for a JITFunction: ``kernel[grid](*args, **kw)`` records the call."""

    def __init__(self, fn, calls: list):
        self.fn, self.calls = fn, calls

    def __getitem__(self, grid):
        return lambda *args, **kw: self.calls.append((self.fn, grid, args, kw))


def _record(case, sm_count: int) -> list:
    name, B, k, hidden, norm, loss, g, prec, variant, *more = case
    disc = Discriminator(kernel_size=k, hidden=hidden, norm=norm, loss=loss, channels=more[0] if more else 1)
    params = [p.detach().float() for p in disc.parameters()]
    x = torch.empty(B, disc.dim)  # never read: the recorder launches nothing
    calls: list = []
    with contextlib.ExitStack() as stack:
        patch = lambda obj, attr, new: stack.enter_context(mock.patch.object(obj, attr, new))  # noqa: E731
        patch(T, "_interpreted", lambda dev: False)  # the CUDA tile sizes and grid
        patch(T, "_sm_count", lambda index: sm_count)
        for attr in ("_bn_stats_kernel", "_disc_main_kernel", "_disc_chunked_kernel", "_bn_dx_kernel"):
            patch(T.K, attr, _Recorder(getattr(T.K, attr), calls))
        T.launch(x, params, norm, loss, float(disc.slope), float(disc.eps), 0.0, g,
                 precision=prec, variant=variant)
    return calls


def _signature(fn, args, kw):
    """ASTSource signature/constexprs from a recorded launch (constexprs are the kwargs)."""
    sig, const = {}, {}
    pos = iter(args)
    for a in fn.arg_names:
        if a in kw:
            sig[a], const[a] = "constexpr", kw[a]
            continue
        v = next(pos)
        if isinstance(v, torch.Tensor):
            sig[a] = "*fp32"
        elif isinstance(v, bool):
            sig[a] = "i1"
        elif isinstance(v, int):
            sig[a] = "i32" if -2**31 <= v < 2**31 else "i64"
        else:
            sig[a] = "fp32"
    return sig, const


def _resources(cubin: bytes) -> dict:
    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    tool = shutil.which("cuobjdump") or (str(bundled) if bundled.exists() else None)
    if tool is None:
        return {}
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        out = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True,
                             text=True).stdout
        sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True).stdout
    m = {key: int(val) for key, val in re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", out)}
    # instructions only (no file names, no comments): equal hashes = same machine code,
    # which is how a source-only refactor of a kernel shows that it changed nothing
    code = "\n".join(re.sub(r"/\*[^*]*\*/", "", ln).strip()
                     for ln in sass.splitlines() if ln.strip().startswith("/*"))
    return {"regs": m.get("REG"), "stack": m.get("STACK"), "local": m.get("LOCAL"),
            "sass_sha": hashlib.sha256(code.encode()).hexdigest()[:12]}


def compile_case(case, arch: int = 90, sm_count: int = 132, kernel: str = "",
                 sets: dict | None = None) -> list:
    """Compile every launch of one case for ``sm_<arch>``; one row per kernel with
    ``ok`` = compiled, fits shared memory, and regs x threads fits the register file."""
    target = GPUTarget("cuda", arch, 32)
    rows = []
    for fn, grid, args, kw in _record(case, sm_count):
        kname = fn.__name__
        if kernel not in kname:
            continue
        kw = {**kw, **(sets or {})}
        opts = {o: kw[o] for o in LAUNCH_OPTS if o in kw}
        consts = {key: v for key, v in kw.items() if key not in LAUNCH_OPTS}
        sig, const = _signature(fn, args, consts)
        row = {"case": case[0], "kernel": kname, "grid": list(grid), **opts}
        try:
            ck = triton.compile(ASTSource(fn, sig, const), target=target, options=opts)
            row["shared"] = int(ck.metadata.shared)
            row.update(_resources(ck.asm["cubin"]))
            threads = 32 * opts.get("num_warps", 4)
            row["ok"] = (row["shared"] <= SMEM_LIMIT.get(arch, 99 * 1024)
                         and (row.get("regs") or 0) * threads <= REGFILE)
        except Exception as e:  # report every kernel, then fail
            row["ok"], row["error"] = False, f"{type(e).__name__}: {str(e)[:300]}"
        rows.append(row)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability x10 (default 90)")
    ap.add_argument("--sm-count", type=int, default=132, help="SMs of the card (grid size)")
    ap.add_argument("--json", type=Path, help="write the table as JSON here")
    ap.add_argument("--only", default="", help="compile only cases whose name contains this")
    ap.add_argument("--kernel", default="", help="compile only kernels whose name contains this")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=INT",
                    help="override a launch option or constexpr (e.g. num_warps=16, BLOCK_B=16)")
    a = ap.parse_args()
    try:
        sets = {k: int(v) for k, v in (item.split("=", 1) for item in a.set)}
    except ValueError:
        ap.error("--set takes KEY=INT")
    print(f"triton {triton.__version__}, torch {torch.__version__}, target sm_{a.arch}")
    rows = []
    for case in [c for c in CASES if a.only in c[0]]:
        for row in compile_case(case, a.arch, a.sm_count, a.kernel, sets):
            rows.append(row)
            extra = row.get("error") or (f"smem {row['shared']} B, regs {row.get('regs')}, "
                                         f"stack {row.get('stack')} B, sass {row.get('sass_sha')}")
            print(f"{'ok ' if row['ok'] else 'BAD'} {row['case']:15s} {row['kernel']:22s} "
                  f"warps {row.get('num_warps')}: {extra}")
    failed = sum(not r["ok"] for r in rows)
    if a.json:
        a.json.write_text(json.dumps({"triton": triton.__version__, "arch": a.arch,
                                      "rows": rows}, indent=1))
    print(f"{len(rows) - failed}/{len(rows)} kernels compiled within sm_{a.arch} limits")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
