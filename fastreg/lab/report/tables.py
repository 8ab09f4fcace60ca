"""The report's render step: its cell tables as Markdown, from the records ``results.json``
keeps (``analysis.report_records``), never from the runs. The same records feed the table
scripts of the docs, so a report's tables and the docs' tables cannot disagree."""
from __future__ import annotations

from .references import metric_keys
from ..protocol import describe_protocol
from ..runs import finite

REF_NAMES = {"baseline": "the baseline", "bankinit": "bank init (2-D slices)", "filterinit": "whole-filter init",
             "chaininit": "chain init", "finetune": "fine-tuning"}


def fmt(x, spec: str = ".3f") -> str:
    return format(x, spec) if finite(x) else "—"


def _ms(mean, std, spec: str = ".3f") -> str:
    """``mean ± std``, the std left out where there was one value; "—" without a value."""
    if not finite(mean):
        return "—"
    return fmt(mean, spec) + (f" ± {fmt(std, spec)}" if std is not None else "")


def metric_cells(cell: dict, layer: str = "conv1") -> str:
    """``judge AUC | MMD² | low-freq energy`` of one layer: mean ± std over the cell's runs."""
    m, s = cell["metrics"], cell["metrics_std"]
    return " | ".join(_ms(m.get(k), s.get(k), spec) for k, spec in zip(metric_keys(layer), (".3f", ".4f", ".3f")))


def pair_cells(d: dict) -> str:
    """``seeds (n) | Δ | 95% CI | p | test`` of a paired difference record."""
    ci = f"[{fmt(d['lo'], '+.2f')}, {fmt(d['hi'], '+.2f')}]" if d["lo"] is not None else "—"
    return (f"{','.join(map(str, d['seeds']))} ({len(d['seeds'])}) | {fmt(d['mean'], '+.2f')} | {ci} | "
            f"{fmt(d['p'], '.3g')} | {d['test']}")


def split_word(protocol: dict | None) -> str:
    """What the accuracy is called: ``validation`` where it was measured on a val/ split."""
    return "validation" if (protocol or {}).get("eval_split") == "val" else "test"


def accuracy_table(cells: list[dict], protocol: dict | None = None) -> list[str]:
    """Test (or validation) accuracy and conv1 filter metrics per cell."""
    word = split_word(protocol)
    where = (f"{describe_protocol(protocol)}, after" if protocol else "Test accuracy on the full test set after")
    where = where[0].upper() + where[1:]
    L = [f"## {word.capitalize()} accuracy", "",
         f"Cells that were run, only. {where} the last epoch; mean ± std "
         "(ddof 1) over seeds. Filter metrics on the final conv1 kernels: judge AUC (fresh MLP, held-out "
         "halves split by whole filter; 0.5 = indistinguishable from the bank, below 0.5 = more typical "
         "of the bank than the bank's own held-out filters), MMD² (RBF, median bandwidth; ≈ 0 = same "
         "distribution), low-freq energy (share of non-DC spectral energy at ≤ 0.25 cycles/px).", "",
         f"| train size | method | reg layers | n | seeds | {'val' if word == 'validation' else 'test'} acc (%) | "
         "judge AUC | MMD² | low-freq energy |",
         "|---:|---|---|---:|---|---:|---:|---:|---:|"]
    for c in cells:
        L.append(f"| {c['train_size']} | {c['label']} | {c['reg_layers']} | {len(c['seeds'])} | "
                 f"{','.join(map(str, c['seeds']))} | {_ms(c['acc_mean'], c['acc_std'], '.2f')} | {metric_cells(c)} |")
    return L


def paired_table(cells: list[dict], ref: str = "baseline", word: str = "test") -> list[str]:
    """Each cell's paired difference to its ``ref`` cell (the baseline, bank init, …); the
    reference cell is named where its settings or reg layers differ from the cell's."""
    L = ["", f"## Paired difference to {REF_NAMES.get(ref, ref)}", "",
         f"Δ = method − {ref} {word} accuracy (percentage points), same train size, same seed and "
         f"data seed, paired t over seeds. The {ref if ref == 'baseline' else ref + ' cell'} has the same "
         "settings, reg layers when run "
         "(a λ = 0 run does not depend on them), and discriminator settings likewise.", "",
         "| train size | method | reg layers | paired seeds (n) | Δ acc (pp) | 95% CI | p | test |",
         "|---:|---|---|---|---:|---|---:|---|"]
    for c in cells:
        d = c["paired"].get(ref)
        if d is None:
            continue
        own = d["vs_variant"] == c["variant"] and d["vs_layers"] == c["reg_layers"]
        vs = "" if own else f" (vs {d['vs']}{'' if d['vs_layers'] == c['reg_layers'] else ', ' + d['vs_layers']})"
        L.append(f"| {c['train_size']} | {c['label']} | {c['reg_layers']}{vs} | {pair_cells(d)} |")
    return L


def bank_table(pairs: list[dict], word: str = "test") -> list[str]:
    """The same method trained with two banks: Δ = newer bank − older bank."""
    if not pairs:
        return []
    return ["", "## The same method with another bank", "",
            f"Δ = {word} accuracy with the newer bank − with the older one (percentage points), same "
            "method, train size, settings, seed and data seed; paired t over seeds.", "",
            "| train size | method | reg layers | banks (newer vs older) | paired seeds (n) | Δ acc (pp) | 95% CI | p | test |",
            "|---:|---|---|---|---|---:|---|---:|---|",
            *(f"| {p['train_size']} | {p['method']} | {p['reg_layers']} | {p['newer']} vs {p['older']} | "
              f"{pair_cells(p)} |" for p in pairs)]


def layer_tables(cells: list[dict], layers: list[dict]) -> list[str]:
    """One table per deeper layer (``{"layer", "judge_rows"}``) for the cells measured on it."""
    L: list[str] = []
    for x in layers:
        layer = x["layer"]
        lk = [c for c in cells if metric_keys(layer)[2] in c["metrics"]]
        if not lk:
            continue
        L += ["", f"## Filter metrics on {layer}", "",
              f"Cells whose runs regularize or bank-initialize {layer}: the same metrics on its final "
              f"kernels, against the bank kernels that serve {layer} in the run's own bank (the judge "
              f"subsamples up to {x['judge_rows']} kernels "
              "per set, split by whole filter).", "",
              "| train size | method | reg layers | n | judge AUC | MMD² | low-freq energy |",
              "|---:|---|---|---:|---:|---:|---:|"]
        L += [f"| {c['train_size']} | {c['label']} | {c['reg_layers']} | {len(c['seeds'])} | {metric_cells(c, layer)} |"
              for c in lk]
    return L


def cell_tables(records: dict) -> list[str]:
    """Every cell table of one protocol's records, in the report's order."""
    cells = records["cells"]
    word = split_word(records.get("protocol"))
    L = accuracy_table(cells, records.get("protocol"))
    for ref in records["refs"]:
        L += paired_table(cells, ref, word)
    return L + bank_table(records["bank_pairs"], word) + layer_tables(cells, records["layers"])


def report_tables(data: dict) -> list[str]:
    """Every cell table of a report: of its one protocol, or a section per protocol (``"protocols"``),
    headed by what its accuracy is measured on, its tables one heading level down."""
    if "protocols" not in data:
        return cell_tables(data)
    L = ["## Protocols", "", f"These runs were measured on {len(data['protocols'])} different protocols; each "
         "has its own tables and figures, and no difference or curve crosses two."]
    for i, sec in enumerate(data["protocols"], 1):
        L += ["", f"## Protocol {i}: {describe_protocol(sec['protocol'])}", ""]
        L += ["#" + line if line.startswith("## ") else line for line in cell_tables(sec)]
    return L
