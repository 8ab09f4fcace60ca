"""Print a Markdown table (median per group; speed-up = reference median / impl median, >1 = faster) from
one or more pytest-benchmark JSON files: ``python bench/summarize.py a.json [b.json]``."""
from __future__ import annotations

import json
import sys
from collections import defaultdict

REFERENCES = ("eager", "randint", "plain", "fp32")  # what a group's speed-ups are relative to


def _name(b: dict) -> str:
    info = b.get("extra_info", {})
    return str(info.get("impl") or b.get("param") or b["name"])


def summarize(paths: list[str]) -> str:
    groups: dict[str, dict[str, float]] = defaultdict(dict)
    machine = set()
    for p in paths:
        with open(p) as f:
            data = json.load(f)
        for b in data.get("benchmarks", []):
            groups[b.get("group") or "?"][_name(b)] = b["stats"]["median"]
            info = b.get("extra_info", {})
            machine.add(info.get("gpu") or info.get("device") or "cpu")
    lines = [f"machine: {', '.join(sorted(machine))}", "",
             "| group | impl | median | speed-up vs eager / randint / plain / fp32 | speed-up vs compile |", "|---|---|---|---|---|"]
    for g in sorted(groups):
        meds = groups[g]
        ref = next((meds[r] for r in REFERENCES if r in meds), None)
        comp = min((v for k, v in meds.items() if k.startswith("compile")), default=None)
        for name, med in sorted(meds.items(), key=lambda kv: kv[1]):
            r1 = f"{ref / med:.2f}x" if ref else ""
            r2 = f"{comp / med:.2f}x" if comp and not name.startswith("compile") else ""
            lines.append(f"| {g} | {name} | {med * 1e3:.3f} ms | {r1} | {r2} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summarize(sys.argv[1:]))
