"""The package's shape: no import cycle among fastreg modules (function-local imports
included), the library never imports the lab (``fastreg.lab``: the commands and what only they
use), files short enough to read in one sitting, and nothing cites a document outside the
repository."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fastreg"
# the `python -m fastreg.X` entry points: shims that start fastreg.lab.X through cli.entry
ENTRY = {"fastreg.train", "fastreg.collect", "fastreg.sweep", "fastreg.report", "fastreg.pack"}
MAX_LINES = 400       # a file one reads in one sitting; the Triton kernels are the exception
LONG_OK = {"fastreg/ops/disc_step_kernels.py"}


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _top_level_names(f: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(f.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


def import_graph() -> dict[str, set[str]]:
    """Module → the fastreg modules it imports anywhere in its body (function-local too)."""
    mods = _modules()
    defined = {m: _top_level_names(f) for m, f in mods.items() if f.name == "__init__.py"}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, f in mods.items():
        is_pkg = f.name == "__init__.py"
        here = name if is_pkg else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = here.split(".")
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                # `from pkg import x`: the submodule pkg.x if there is one, else pkg itself when
                # its __init__ defines x (else x is a compiled extension, like fastreg._C)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names
                           if f"{base}.{a.name}" in mods or a.name in defined.get(base, {a.name})]
            else:
                continue
            graph[name] |= {t for t in targets if t in mods and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_graph_sees_function_local_imports():
    g = import_graph()
    assert "fastreg.ops.disc_step_triton" in g["fastreg.ops.disc_step"]   # imported inside functions
    assert "fastreg.ops.sample" in g["fastreg.ops"]
    assert g["fastreg.lab.train"] >= {"fastreg", "fastreg.lab.runs"}         # `from .. import __version__`
    assert "fastreg" not in g["fastreg.ops._native"]                        # `from .. import _C`


def test_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_library_never_imports_the_lab():
    lab = {m for m in import_graph() if m == "fastreg.lab" or m.startswith("fastreg.lab.")}
    bad = {m: sorted(d & lab) for m, d in import_graph().items() if m not in lab | ENTRY and d & lab}
    assert not bad, bad
    assert lab >= {"fastreg.lab.train", "fastreg.lab.report", "fastreg.lab.loop", "fastreg.lab.data"}


def test_entry_points_are_shims_of_the_lab():
    g = import_graph()
    for m in ENTRY:
        assert g[m] >= {m.replace("fastreg.", "fastreg.lab.")}, m
        assert len((PKG / (m.split(".")[1] + ".py")).read_text().splitlines()) <= 8, m


def test_one_entry_point_pattern():
    """Every ``if __name__ == "__main__"`` block in the package is ``entry(main)`` (lab/cli.py)."""
    blocks = {}
    for f in PKG.rglob("*.py"):
        for node in ast.parse(f.read_text()).body:
            if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
                blocks[f.relative_to(ROOT).as_posix()] = ast.unparse(node.body[0]) if len(node.body) == 1 else "?"
    assert len(blocks) >= 6 and set(blocks.values()) == {"entry(main)"}, blocks


def _private_imports() -> list[str]:
    """``from X import _name`` in the package, where ``_name`` is not a private submodule of the
    importing module's own package (``from . import _native``) nor a compiled extension."""
    mods = _modules()
    bad = []
    for name, f in mods.items():
        here = name if f.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            for a in node.names:
                if not a.name.startswith("_") or a.name.startswith("__"):
                    continue
                if node.module is None and node.level == 1 and (f"{here}.{a.name}" in mods or a.name == "_C"):
                    continue            # a private module of its own package
                if node.module is None and node.level == 2 and a.name == "_C":
                    continue            # the compiled extension
                bad.append(f"{f.relative_to(ROOT)}: {a.name} from {'.' * node.level}{node.module or ''}")
    return bad


def test_no_private_name_crosses_a_module():
    assert not _private_imports(), _private_imports()


HISTORY = re.compile(r"(?i)\bissue \d+|\bbefore (fastreg )?0\.\d|\bfastreg 0\.\d|\b(this|an earlier|earlier|last) session"
                     r"|\blent\b|no gpu (has been|was) ")


def test_code_tests_and_docs_say_what_is_not_what_happened():
    """No issue numbers, version history or the story of the machines a measurement ran on in
    code, tests, benchmarks and docs (docs/reports/ are generated records, left as they are)."""
    files = [f for d in ("fastreg", "tests", "bench", "kernels", "docs") for f in (ROOT / d).rglob("*")
             if f.is_file() and f.suffix in (".py", ".md", ".sh", ".cpp", ".cu", ".h", ".txt")
             and not f.relative_to(ROOT).as_posix().startswith("docs/reports/") and f != Path(__file__).resolve()]
    files += [ROOT / "README.md", ROOT / "setup.py", ROOT / "CMakeLists.txt"]
    hits = [f"{f.relative_to(ROOT)}:{i}: {line.strip()[:80]}" for f in files
            for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1) if HISTORY.search(line)]
    assert not hits, hits


def test_files_are_short():
    long = {f.relative_to(ROOT).as_posix(): n for f in list(PKG.rglob("*.py")) + list((ROOT / "tests").rglob("*.py"))
            + list((ROOT / "bench").rglob("*.py"))
            if (n := len(f.read_text().splitlines())) > MAX_LINES and f.relative_to(ROOT).as_posix() not in LONG_OK}
    assert not long, long


def test_nothing_refers_to_files_outside_the_repository():
    """No citation of a document outside the repository (the code cites docs/DESIGN.md).
    docs/reports/ is left out: generated records that quote the commands as they were run."""
    pat = re.compile(r"\.\./shared|SPEC\.md|SPEC §")
    files = [f for f in ROOT.rglob("*") if f.is_file() and f.suffix in (".py", ".md", ".sh", ".txt", ".cpp",
                                                                       ".cu", ".h", ".toml", ".json")
             and not any(p in (".git", "build", "runs") or p.endswith(".egg-info") for p in f.parts)
             and not f.relative_to(ROOT).as_posix().startswith("docs/reports/")
             and f != Path(__file__).resolve()]                    # this file names the pattern
    hits = [f"{f.relative_to(ROOT)}:{i}" for f in files
            for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1) if pat.search(line)]
    assert not hits, hits


def test_docs_name_no_path_of_a_machine():
    """README, docs (generated reports included) and bench results quote commands with repository-
    relative paths and DATA, never a folder of the machine they ran on."""
    pat = re.compile(r"(?<![\w.])/(tmp|work|root|home|Users)/")
    files = [ROOT / "README.md", ROOT / "bench" / "RESULTS.md"] + [
        f for f in (ROOT / "docs").rglob("*") if f.is_file() and f.suffix in (".md", ".json", ".py")]
    hits = [f"{f.relative_to(ROOT)}:{i}" for f in files
            for i, line in enumerate(f.read_text(errors="replace").splitlines(), 1) if pat.search(line)]
    assert not hits, hits



def test_the_library_speaks_its_own_words():
    """Library messages name the library's parameters, never a command-line flag (``--arch``):
    the commands put the flag a user typed in front (``lab/cli.flagged``)."""
    lab = {m for m in _modules() if m == "fastreg.lab" or m.startswith("fastreg.lab.")} | ENTRY
    flag = re.compile(r"(?<![\w-])--[a-z]")
    hits = []
    for name, f in _modules().items():
        if name in lab:
            continue
        tree = ast.parse(f.read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body
                and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for n in ast.walk(tree):
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs and flag.search(n.value):
                hits.append(f"{f.relative_to(ROOT)}:{n.lineno}: {n.value[:60]}")
    assert not hits, hits


def test_a_library_error_about_an_argument_is_flagged_by_the_command():
    import pytest
    from fastreg.errors import UsageError
    from fastreg.lab.cli import flagged
    from fastreg.models import build_model
    with pytest.raises(UsageError) as e:
        build_model("resnet99")
    assert e.value.param == "arch" and "--" not in str(e.value)
    assert flagged(e.value).startswith("--arch: unknown arch 'resnet99'")


def test_the_gpu_check_runs_every_benchmark_suite():
    """A suite gpu_check.sh does not name is never measured on the one GPU a session may get."""
    script = (ROOT / "bench" / "gpu_check.sh").read_text()
    named = set(re.findall(r'"(\w+):\d+:[^"]*"', script))
    suites = {f.stem.removeprefix("test_bench_") for f in (ROOT / "bench").glob("test_bench_*.py")}
    assert suites and not suites - named, f"bench suites gpu_check.sh does not run: {sorted(suites - named)}"
