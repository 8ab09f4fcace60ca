"""Time the fused disc step over its tuning knobs on a GPU, each config checked first.

Why: the defaults (rows per tile, persistent grid size, dot precision, register vs
chunked kernel) were chosen from static compile data without a GPU. One short run
in ``bench/gpu_check.sh`` measures the alternatives, so the next change to the
defaults rests on numbers. Stops starting new configs after ``--budget`` seconds.

    python bench/tune_disc.py [--shapes S2,S3] [--budget 90] [--json tune.json]

On a CPU it runs under the Triton interpreter at a tiny shape ("T"), as a dry run
of the script (the times are meaningless there).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fastreg import Discriminator  # noqa: E402
from fastreg.ops.disc_step_eager import disc_step_eager  # noqa: E402
from fastreg.ops.tolerance import max_rel_err  # noqa: E402
from fastreg.ops.disc_step_triton import disc_step_triton  # noqa: E402

SHAPES = {"T": (200, 5), "S1": (384, 7), "S2": (32768, 5), "S3": (1 << 20, 3)}
TOL = {"ieee": 1e-4, "tf32x3": 1e-4, "tf32": 5e-3}  # DESIGN.md §6, norm-wise relative


def _configs(cuda: bool):
    sms = torch.cuda.get_device_properties(0).multi_processor_count if cuda else 4
    for prec, variant, bb, grid in itertools.product(
            ("ieee", "tf32", "tf32x3"), ("registers", "chunked"), (16, 32, 64), (1, 2, 4)):
        if variant == "chunked" and (bb, prec) != (32, "ieee"):
            continue  # the wide-layer kernel: one point, to compare against
        yield dict(precision=prec, variant=variant, block_b=bb, num_programs=grid * sms)


def _time_ms(fn, reps: int, cuda: bool) -> float:
    ts = []
    for _ in range(reps):
        if cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            e.synchronize()
            ts.append(s.elapsed_time(e))
        else:
            t = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    ap.add_argument("--shapes", default="S3,S2,S1" if cuda else "T", help="most compute-bound first")
    ap.add_argument("--budget", type=float, default=90.0, help="seconds; no new config after")
    ap.add_argument("--reps", type=int, default=20 if cuda else 2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    dev = "cuda" if cuda else "cpu"
    t_end = time.monotonic() + a.budget
    rows = []
    for shape in a.shapes.split(","):
        B, k = SHAPES[shape]
        torch.manual_seed(0)
        disc = Discriminator(kernel_size=k, hidden=(128, 128)).to(dev)
        real, fake = torch.randn(B, k, k, device=dev), torch.randn(B, k, k, device=dev)
        ref = disc_step_eager(fake.double(), disc.double(), 0.0, 1.0)
        disc.float()
        for cfg in _configs(cuda):
            if time.monotonic() > t_end:
                rows.append({"shape": shape, **cfg, "skipped": "budget"})
                continue
            try:
                err = max_rel_err(disc_step_triton(fake, disc, 0.0, 1.0, **cfg), ref)
                ms = _time_ms(lambda: (disc_step_triton(real, disc, 1.0, None, **cfg),
                                       disc_step_triton(fake, disc, 0.0, 1.0, **cfg)),
                              a.reps, cuda)
                row = {"shape": shape, **cfg, "ms": ms, "max_rel_err": err,
                       "ok": err <= TOL[cfg["precision"]]}
            except Exception as e:  # a config that fails to compile or launch is data too
                row = {"shape": shape, **cfg, "error": f"{type(e).__name__}: {str(e)[:200]}"}
            rows.append(row)
    done = [r for r in rows if "ms" in r]
    print("| shape | precision | variant | block_b | programs | median ms | max rel err |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(done, key=lambda r: (r["shape"], r["ms"])):
        flag = "" if r["ok"] else " FAIL"
        print(f"| {r['shape']} | {r['precision']} | {r['variant']} | {r['block_b']} | "
              f"{r['num_programs']} | {r['ms']:.3f} | {r['max_rel_err']:.1e}{flag} |")
    bad = [r for r in rows if "error" in r or r.get("ok") is False]
    skipped = sum("skipped" in r for r in rows)
    print(f"{len(done)} configs timed, {skipped} skipped (budget), {len(bad)} failed")
    for r in bad:
        print("FAILED:", r)
    if a.json:
        a.json.write_text(json.dumps({"device": torch.cuda.get_device_name() if cuda else "cpu",
                                      "rows": rows}, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
