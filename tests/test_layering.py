"""The import rules between packages, checked on the source (AST), not by convention.

- ``problems.model`` imports nothing else from ``problems`` but the leaf
  ``problems.protocol`` (maths only, no files);
- ``problems.data`` imports ``problems.model`` (and itself), not catalog/oracle/problem;
- ``problems.protocol`` imports nothing from the project (numpy only);
- nothing in ``problems`` imports ``optimizers`` or ``bench``;
- ``optimizers`` import only ``problems.protocol`` from ``problems``, never ``bench``;
- only ``bench`` (and tests/benchmarks) import ``bench``;
- inside ``bench`` the rooms form a stack (:data:`BENCH_ROOMS`, lowest first):
  a room imports only itself and rooms below it; ``bench.cli`` may import any
  room, and ``bench/`` holds nothing but the rooms and ``cli.py``;
- no module is longer than 400 lines.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("problems", "optimizers", "bench")
BENCH_ROOMS = ("score", "run", "isolation", "report", "experiments", "commands")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every project module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path


def _room(module: str) -> int | None:
    """Position of ``module``'s room in :data:`BENCH_ROOMS` (None for ``bench`` itself and ``bench.cli``)."""
    parts = module.split(".")
    return BENCH_ROOMS.index(parts[1]) if len(parts) > 1 and parts[1] in BENCH_ROOMS else None


def _room_may_import(module: str, imported: str) -> bool:
    if module == "bench.cli":
        return True
    here, there = _room(module), _room(imported)
    return here is not None and there is not None and there <= here


def _violations(path: Path) -> list[str]:
    name = _module_name(path)
    bad = []
    for imp in _imports(path):
        top = imp.split(".")[0]
        if name.startswith("problems.model") and top == "problems" and not (
                imp.startswith("problems.model") or imp.startswith("problems.protocol")):
            bad.append(imp)
        elif name.startswith("problems.data") and imp.startswith("problems") and not (
                imp.startswith("problems.model") or imp.startswith("problems.data")):
            bad.append(imp)
        elif name == "problems.protocol" and top in PACKAGES:
            bad.append(imp)
        elif name.startswith("problems") and top in ("optimizers", "bench"):
            bad.append(imp)
        elif name.startswith("optimizers") and (top == "bench" or (
                top == "problems" and not imp.startswith("problems.protocol"))):
            bad.append(imp)
        elif name.startswith("bench.") and top == "bench" and not _room_may_import(name, imp):
            bad.append(imp)
    return sorted(bad)


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_import_rules(path):
    assert _violations(path) == [], f"{path.relative_to(ROOT)} breaks the layering rules"


@pytest.mark.parametrize("path", list(_modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_size(path):
    assert len(path.read_text().splitlines()) <= 400


def test_the_rules_catch_a_violation():
    """The checker itself: a model module importing the oracle is flagged."""
    fake = ROOT / "problems" / "model" / "_layering_probe.py"
    fake.write_text("from ..oracle import CountingOracle\nimport bench.run.runner\n")
    try:
        assert _violations(fake) == ["bench.run.runner", "problems.oracle", "problems.oracle.CountingOracle"]
    finally:
        fake.unlink()


def test_bench_rooms_catch_an_upward_import():
    """A verdict module importing the runner (a higher room) is flagged; the CLI may import any room."""
    fake = ROOT / "bench" / "score" / "_layering_probe.py"
    fake.write_text("from ..run.runner import run\nfrom . import stats\n")
    try:
        assert _violations(fake) == ["bench.run.runner", "bench.run.runner.run"]
    finally:
        fake.unlink()
    assert _room_may_import("bench.cli", "bench.commands.run_cmd")
    assert not _room_may_import("bench.run.runner", "bench.isolation.harness")


def test_bench_top_level_holds_only_rooms():
    entries = {p.name for p in (ROOT / "bench").iterdir() if p.name != "__pycache__"}
    assert entries == {"__init__.py", "cli.py", *BENCH_ROOMS}
    for room in BENCH_ROOMS:
        doc = ast.get_docstring(ast.parse((ROOT / "bench" / room / "__init__.py").read_text()))
        assert doc, f"bench/{room}/__init__.py says what lives there"


def _doc_files():
    yield ROOT / "README.md"
    yield from sorted((ROOT / "reports").rglob("*.md"))
    for top in (*PACKAGES, "tests", "benchmarks"):
        yield from sorted((ROOT / top).rglob("*.py"))


def test_every_path_named_in_docs_exists():
    """Docstrings, comments, README and generated reports name files of the current tree
    (``problems/model/spectra.py``, ``:mod:`problems.data.cache```), not of an older layout."""
    import re
    slash = re.compile(r"(?<![\w/.])((?:problems|bench|optimizers|tests|benchmarks)/[\w/]*\.py)\b")
    module = re.compile(r":mod:`((?:problems|bench|optimizers)(?:\.\w+)*)`")
    missing = []
    for path in _doc_files():
        text = path.read_text(errors="ignore")
        for m in slash.finditer(text):
            if not (ROOT / m.group(1)).exists():
                missing.append(f"{path.relative_to(ROOT)}: {m.group(1)}")
        for m in module.finditer(text):
            parts = m.group(1).split(".")
            if not ((ROOT.joinpath(*parts).with_suffix(".py")).exists() or (ROOT.joinpath(*parts) / "__init__.py").exists()):
                missing.append(f"{path.relative_to(ROOT)}: {m.group(1)}")
    assert missing == []
