"""The package layout: stage folders, no import cycles, no stage importing a later one.

The import graph is read from the source (every ``import`` statement, including
those inside functions), so a lazy import cannot hide a cycle.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import patchforensics

ROOT = Path(patchforensics.__file__).resolve().parent

#: pipeline stages, lowest first; a module may import its own stage or earlier ones.
#: Stages of the same rank are independent of each other (explain and screening; experiments
#: and release). ``experiments`` comes after explain (a grid runs the region histograms);
#: ``report`` shows its findings by reading the files it writes (experiment.json), not by
#: importing it. ``release`` (making the bundled detector) trains, evaluates and measures its
#: card through screening's ``detect``, so it comes after training and screening, and no
#: screening, explain or experiments module can import it (``cli release`` does): screening
#: does not train. ``probe`` (what moves p(fake) when one thing in a face changes) scores and
#: segments faces, beside experiments and release; ``report`` and ``findings`` read the files it
#: writes. ``adapt`` (teaching a detector a new generator) trains a part of a detector
#: and measures it on the base's test sets: it comes after training, and nothing but the CLI uses it.
STAGE_RANK = {"core": 0, "suites": 0, "grids": 0, "data": 1, "models": 2, "scoring": 3, "evaluation": 4,
              "training": 5, "explain": 6, "screening": 6, "experiments": 7, "release": 7, "probe": 7, "adapt": 8,
              "demo": 9, "cli": 10, "": 11}


def module_name(path: Path) -> str:
    parts = ["patchforensics", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else ""


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of this package it imports}``, from the source files."""
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # ``from pkg import sub`` imports the submodule when there is one
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            edges.update(t for t in targets if t in files and t != name)
        graph[name] = edges
    return graph


GRAPH = import_graph()


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, …, a]``, or ``None``."""
    state: dict[str, int] = {}          # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_graph_sees_lazy_imports_and_cycles():
    # the walker resolves relative imports, including those inside functions ...
    assert "patchforensics.evaluation.calibrate" in GRAPH["patchforensics.training.train"]
    assert "patchforensics.scoring.engine" in GRAPH["patchforensics.evaluation.evaluate"]
    assert any(m.startswith("patchforensics.training") for m in GRAPH["patchforensics.cli.train"])  # lazy
    # ... and the cycle finder finds a cycle when there is one
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_no_stage_imports_a_later_or_a_parallel_stage():
    bad = []
    for module, imports in GRAPH.items():
        for target in imports:
            a, b = stage(module), stage(target)
            if a != b and STAGE_RANK[b] >= STAGE_RANK[a]:
                bad.append(f"{module} ({a}) imports {target} ({b})")
    assert not bad, "\n".join(bad)


def test_every_module_is_in_a_known_stage():
    assert {stage(m) for m in GRAPH} <= set(STAGE_RANK)
    flat = sorted(m for m in GRAPH if m.count(".") == 1 and stage(m) not in STAGE_RANK)
    assert not flat, f"modules outside the stage folders: {flat}"


@pytest.mark.parametrize("folder", [s for s in STAGE_RANK if s and (ROOT / s).is_dir() and s not in ("suites", "grids")])
def test_each_stage_folder_says_its_job_in_one_line(folder):
    doc = ast.get_docstring(ast.parse((ROOT / folder / "__init__.py").read_text())) or ""
    first = doc.splitlines()[0] if doc else ""
    assert first.endswith(".") and len(first) <= 150, \
        f"{folder}/__init__.py needs a docstring whose first line says the folder's job"


#: the size limits of the code (counted as the issue states them: lines of a file; a function's
#: ``end_lineno - lineno + 1``, docstring and nested functions included)
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_longer_than_the_limit():
    long = [f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})"
            for p in ROOT.rglob("*.py") for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_importing_the_package_stays_light_and_its_short_api_resolves():
    """``import patchforensics`` loads neither torch nor ONNX Runtime (the CLI's start-up);
    the top-level names load their module on first use and are the ones defined there."""
    code = ("import sys, patchforensics as p; heavy = [m for m in ('torch', 'onnxruntime', 'mediapipe') "
            "if m in sys.modules]; assert not heavy, heavy; "
            "from patchforensics.models.registry import create_model; "
            "from patchforensics.screening.detector import open_detector; "
            "assert p.create_model is create_model and p.open_detector is open_detector; "
            "assert 'xception_block2' in p.list_models() and 'torch' in sys.modules; "
            "assert set(p.__all__) <= set(dir(p))")
    subprocess.run([sys.executable, "-c", code], check=True)
