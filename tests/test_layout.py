"""The import graph keeps the layout docs/architecture.md describes: recipes/ never imports benchmark/,
every arrow between benchmark's sub-packages points down the layer order below, no two modules
import each other (directly or around a loop), and a function-local import exists only as a
commented exception (a slow import that most callers never need)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recipes", "benchmark")
# Top to bottom: a unit may import only units below it (and itself).
LAYERS = ["benchmark", "benchmark.launch", "benchmark.report", "benchmark.scoring", "benchmark.separate", "benchmark.baselines",
          "benchmark.data", "recipes"]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module `name` refers to (`pkg.mod.attr` -> `pkg.mod`), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _unit(module: str) -> str:
    if module.startswith("recipes"):
        return "recipes"
    parts = module.split(".")
    sub = ".".join(parts[:2])
    return sub if len(parts) > 1 and (ROOT / Path(*parts[:2])).is_dir() else "benchmark"


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(project module imported, line, inside a function) for every import statement."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    local = {id(sub) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             for sub in ast.walk(node) if isinstance(sub, (ast.Import, ast.ImportFrom))}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                if node.level else node.module
            names = [f"{base}.{a.name}" for a in node.names]  # `from pkg import mod` imports pkg.mod
        else:
            continue
        for name in names:
            target = _resolve(name)
            if target and target != module:
                found.append((target, node.lineno, id(node) in local))
    return found


def test_the_graph_sees_the_imports():
    # The checks below are only as good as this parser: a known edge of each kind must be seen.
    assert any(t == "benchmark.scoring.metrics" for t, _, _ in imports("benchmark.scoring.workers"))
    assert any(t == "recipes.files" for t, _, _ in imports("benchmark.report.listen"))
    assert any(t == "recipes" for t, _, _ in imports("recipes.lstm_mask"))
    assert any(loc and t == "recipes.train" for t, _, loc in imports("benchmark.train_cmd"))
    assert {_unit(m) for m in MODULES} == set(LAYERS)


def test_recipes_import_nothing_from_benchmark():
    bad = [f"{m} line {ln} imports {t}" for m in MODULES if m.startswith("recipes")
           for t, ln, _ in imports(m) if t.startswith("benchmark")]
    assert not bad, bad


def test_arrows_between_sub_packages_point_down():
    up = [f"{m} ({_unit(m)}) line {ln} imports {t} ({_unit(t)})" for m in MODULES for t, ln, _ in imports(m)
          if LAYERS.index(_unit(t)) < LAYERS.index(_unit(m))]
    assert not up, up


def test_the_report_floor_reaches_no_model_code():
    """benchmark.report only reads files: nothing it imports at module level, however indirectly,
    is the separation code or the checkpoint loader (which bring torch and the models)."""
    seen, todo = set(), [m for m in MODULES if _unit(m) == "benchmark.report"]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += [t for t, _, local in imports(module) if not local]
    bad = sorted(m for m in seen if _unit(m) == "benchmark.separate" or m in ("recipes.checkpoint", "recipes.train"))
    assert not bad, bad


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_modules_or_sub_packages():
    modules = {m: {t for t, _, _ in imports(m)} for m in MODULES}
    units = {}
    for m, targets in modules.items():
        units.setdefault(_unit(m), set()).update(_unit(t) for t in targets if _unit(t) != _unit(m))
    assert _cycle(modules) is None, _cycle(modules)
    assert _cycle(units) is None, _cycle(units)


@pytest.mark.parametrize("graph, cyclic", [({"a": {"b"}, "b": {"c"}, "c": set()}, False),
                                           ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True)])
def test_cycle_finder(graph, cyclic):
    assert (_cycle(graph) is not None) == cyclic


def test_function_local_imports_are_commented_exceptions():
    """A late import must say why on its line or the comment line above (a slow import), so no
    late import hides a cycle."""
    bad = []
    for m, path in MODULES.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    i = sub.lineno - 2  # the comment may head a block of consecutive imports
                    while i >= 0 and lines[i].strip().startswith(("import ", "from ")):
                        i -= 1
                    above = lines[i].strip() if i >= 0 else ""
                    if "#" not in lines[sub.lineno - 1] and not above.startswith("#"):
                        bad.append(f"{path.relative_to(ROOT)}:{sub.lineno}: {lines[sub.lineno - 1].strip()}")
    assert not bad, bad
