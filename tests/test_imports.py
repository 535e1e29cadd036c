"""The house's import rules, read from the source with `ast`: no module imports one that
imports it back (no cycles), and no stage imports a later stage of the data path."""

from __future__ import annotations

import ast
from pathlib import Path

import tiffsink

PKG = Path(tiffsink.__file__).parent

# The data path, first to last: a unit may import its own rank or an earlier one, and
# units sharing a rank (siblings, like the two engines) never import each other.
RANKS: list[tuple[str, ...]] = [
    ("errors", "version", "logthrottle", "testing"),
    ("config", "signals"),
    ("decode", "batch"),
    ("dataset",),
    ("feed", "publish"),  # the feeders, and the publisher of committed rows
    ("pipeline", "cluster"),  # the two engines, side by side
    ("service",),
    ("cli",),
    ("__main__", "__init__"),  # the entry point, and the public API users import
]
RANK = {unit: r for r, units in enumerate(RANKS) for unit in units}

# Imports that break the order on purpose, each with its reason.
ALLOWED = {
    # The worker probe is pickled by value and run on other hosts, against whatever
    # tiffsink is installed there (maybe another version): it may only use the package.
    "cluster.connect -> __init__",
}

Graph = dict[str, set[str]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _exists(dotted: str, root: Path) -> bool:
    p = root.joinpath(*dotted.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def _imports(path: Path, root: Path) -> set[str]:
    """The package's modules that `path` imports (relative or absolute; any scope)."""
    name = _module_name(path, root)
    package = [] if name == "__init__" else name.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[: len(package) - (node.level - 1)]
            mod = [*base, *(node.module.split(".") if node.module else [])]
            for alias in node.names:
                sub = ".".join([*mod, alias.name])
                found.add(sub if _exists(sub, root) else ".".join(mod) or "__init__")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                names = [node.module or ""]
            top = f"{root.name}."
            found |= {n.removeprefix(top) for n in names if n.startswith(top)}
            found |= {"__init__" for n in names if n == root.name}
    return found - {name}


def graph_of(root: Path) -> Graph:
    """Module -> the package's modules it imports, for the package at `root`."""
    return {_module_name(p, root): _imports(p, root) for p in root.rglob("*.py")}


def _unit(module: str) -> str:
    return module.split(".")[0]


def upward(graph: Graph, rank: dict[str, int], allowed: set[str]) -> list[str]:
    """Imports of another unit at the same or a later rank."""
    return [
        f"{m} -> {t}"
        for m, targets in sorted(graph.items())
        for t in sorted(targets)
        if _unit(t) != _unit(m) and rank[_unit(t)] >= rank[_unit(m)]
        if f"{m} -> {t}" not in allowed
    ]


def cycles(graph: Graph) -> list[list[str]]:
    """Each cycle found by a depth-first walk, as the modules along it."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the walk's stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                found.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return found


def test_every_unit_has_a_rank() -> None:
    """Each top-level package and module sits at a declared stage of the data path."""
    assert {_unit(m) for m in graph_of(PKG)} - RANK.keys() == set()


def test_no_stage_imports_a_later_or_sibling_stage() -> None:
    """An import goes to the same unit or an earlier stage, never up or sideways."""
    assert upward(graph_of(PKG), RANK, ALLOWED) == []


def test_no_import_cycles() -> None:
    """No module reaches itself through the modules it imports."""
    assert cycles(graph_of(PKG)) == []


def test_the_checks_find_a_planted_upward_import_and_cycle(tmp_path: Path) -> None:
    """A package whose early stage imports a later one, in a loop, fails both checks."""
    root = tmp_path / "pkg"
    (root / "low").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "low" / "__init__.py").write_text("")
    (root / "low" / "a.py").write_text("def f():\n    from ..high import g\n")
    (root / "high.py").write_text("from .low.a import f\nimport pkg.low.a\n")
    graph = graph_of(root)
    assert graph["high"] == {"low.a"} and graph["low.a"] == {"high"}
    assert upward(graph, {"low": 0, "high": 1, "__init__": 2}, set()) == ["low.a -> high"]
    assert cycles(graph) == [["high", "low.a", "high"]]


def test_the_architecture_map_names_every_module() -> None:
    """docs/architecture.md names each module by its path inside its folder."""
    doc = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text()
    unnamed = [
        str(p.relative_to(PKG))
        for p in sorted(PKG.rglob("*.py"))
        if p.name != "__init__.py" and p.name not in doc
    ]
    assert unnamed == []


def test_a_worker_imports_neither_the_readers_nor_zarr_python() -> None:
    """A worker process's module pulls in only what decoding and writing rows need: the
    fork server imports it, and every extra module delays a worker's start."""
    import subprocess
    import sys

    heavy = (
        "zarr",
        "tiffsink.dataset.reader",
        "tiffsink.dataset.writer",
        "tiffsink.dataset.collection",
        "tiffsink.pipeline.pipeline",
    )
    code = (
        "import sys, tiffsink.pipeline.worker\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""


def test_the_command_starts_no_blas_threads() -> None:
    """Loading the command, then numpy, leaves the process with its one thread: no
    OpenBLAS thread pool spinning beside the workers."""
    import os
    import subprocess
    import sys

    code = (
        "import os, tiffsink.cli, numpy\n"
        "numpy.ones((64, 64)) @ numpy.ones((64, 64))\n"
        "print(len(os.listdir('/proc/self/task')))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "1"
