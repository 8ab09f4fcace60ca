"""Package the class-disjoint (classes 0-4) banks and source networks from two collect folders.

    python docs/scripts/package_c04.py [--dwpnet runs/collect-c04-dwpnet] [--resnet runs/collect-c04-resnet20]

Writes into fastreg/assets/: bank_cifar10c04_dwpnet.safetensors (conv1 + conv2 of the DWPNet
bank; conv3/conv4 stay in the collect folder, for size), bank_cifar10c04_resnet20.safetensors
(every 3x3 conv, as collected) and sources_cifar10c04_resnet20.safetensors (the five ResNet-20
state_dicts in fp16, for --init chain and fine-tuning); and the recipes docs/banks/dwpnet_c04.json,
resnet20_c04.json from the banks' own metadata. Either folder may be left out with --skip-*.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fastreg.bank import KernelBank  # noqa: E402
from fastreg.chain import load_sources, save_sources  # noqa: E402
from fastreg.io_util import atomic_write_json  # noqa: E402

ASSETS, DOCS = ROOT / "fastreg" / "assets", ROOT / "docs" / "banks"
COMMAND = {
    "dwpnet": "python -m fastreg.collect --preset converged --layers conv1,conv2,conv3,conv4 --classes 0,1,2,3,4 "
              "--data-root DATA --out runs/collect-c04-dwpnet [--resume]",
    "resnet20": "python -m fastreg.collect --arch resnet20 --preset cpu --epochs 15 --classes 0,1,2,3,4 "
                "--data-root DATA --out runs/collect-c04-resnet20 --prefix resnet20. [--resume]",
}
NOTE = ("class-disjoint protocol (DESIGN.md §12): the source models saw CIFAR-10 classes 0-4 only; targets are "
        "classes 5-9. Seeds trained as 2 single-thread processes (OMP_NUM_THREADS=1) side by side, then the "
        "command above (all seeds, --resume) wrote the bank from the finished seeds")


def recipe_doc(bank: KernelBank, arch: str, file_note: str) -> dict:
    meta = bank.meta
    doc = {"command": COMMAND[arch], "note": NOTE, "machine": "2-core AMD EPYC with AVX512-BF16, bf16 autocast",
           "dataset": meta["dataset"], "classes": json.loads(meta["classes"])}
    doc.update(json.loads(meta["recipe"]))
    for k in ("seeds", "source_test_acc", "source_train_time_s"):
        doc[k] = json.loads(meta[k])
    doc["file"] = file_note
    return doc


def package_dwpnet(folder: Path) -> None:
    bank = KernelBank.load(folder / "bank.safetensors")
    keep = ["conv1", "conv2"]
    meta = dict(bank.meta)
    for key in ("filter_rows", "rows_per_model"):     # per-layer records: the kept layers only
        if key in meta:
            meta[key] = json.dumps({k: v for k, v in json.loads(meta[key]).items() if k in keep})
    small = KernelBank({k: bank.layers[k] for k in keep}, meta)
    out = ASSETS / "bank_cifar10c04_dwpnet.safetensors"
    small.save(out)
    mb = out.stat().st_size / 1e6
    n1, n2 = (small.layers[k].shape[0] for k in keep)
    atomic_write_json(DOCS / "dwpnet_c04.json", recipe_doc(
        small, "dwpnet", f"fastreg/assets/{out.name} ({mb:.1f} MB; conv1 {n1} 7x7 kernels, conv2 {n2} 5x5; "
                         "classes 0-4 only)"))
    print(f"{out.name}: {mb:.1f} MB, acc {meta['source_test_acc']}")


def package_resnet(folder: Path) -> None:
    bank = KernelBank.load(folder / "bank.safetensors")
    out = ASSETS / "bank_cifar10c04_resnet20.safetensors"
    bank.save(out)
    models, desc = load_sources(folder)
    seeds = json.loads(bank.meta["seeds"])
    if [f"seed{s}" for s in seeds] != desc["seeds"]:
        raise SystemExit(f"bank seeds {seeds} differ from the finished models {desc['seeds']}")
    src = ASSETS / "sources_cifar10c04_resnet20.safetensors"
    meta = {k: bank.meta[k] for k in ("format", "dataset", "source_split", "architecture", "recipe", "seeds",
                                       "source_test_acc", "classes") if k in bank.meta}
    meta["format"] = "fastreg-sources/1"
    save_sources({f"seed{s}": m for s, m in zip(seeds, models)}, src, meta)
    mb = out.stat().st_size / 1e6
    atomic_write_json(DOCS / "resnet20_c04.json", recipe_doc(
        bank, "resnet20", f"fastreg/assets/{out.name} ({mb:.1f} MB, {len(bank.layers)} layers, every 3x3 conv "
                          f"of 5 models) + {src.name} ({src.stat().st_size / 1e6:.1f} MB, the 5 state_dicts in "
                          "fp16: --sources resnet20_c04)"))
    print(f"{out.name}: {mb:.1f} MB; {src.name}: {src.stat().st_size / 1e6:.1f} MB; acc {bank.meta['source_test_acc']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dwpnet", type=Path, default=ROOT / "runs" / "collect-c04-dwpnet")
    p.add_argument("--resnet", type=Path, default=ROOT / "runs" / "collect-c04-resnet20")
    p.add_argument("--skip-dwpnet", action="store_true")
    p.add_argument("--skip-resnet", action="store_true")
    a = p.parse_args()
    if not a.skip_resnet:
        package_resnet(a.resnet)
    if not a.skip_dwpnet:
        package_dwpnet(a.dwpnet)


if __name__ == "__main__":
    main()
