"""The package layout: a pure core, a server that does not load the trainers, no import cycle."""
import subprocess
import sys

import grimp

from .conftest import ROOT


def module_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. the import cycles."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.find_modules_directly_imported_by(node):
            if nxt not in graph.modules:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return out


def test_no_import_cycle_between_any_two_modules():
    graph = grimp.build_graph("geovision", "app", "train")
    assert len(graph.modules) > 60
    assert module_cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for a, b in (("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")):
        graph.add_import(importer=a, imported=b)
    assert module_cycles(graph) == [["p.a", "p.b", "p.c"]]


def _loaded_after(code: str) -> set[str]:
    """Top-level packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_core_loads_without_flask_and_without_training_code():
    loaded = _loaded_after("import geovision.checkpoint, geovision.device, geovision.imaging, geovision.metrics, "
                           "geovision.retrieval, geovision.rle, geovision.tiling, geovision.whales")
    assert "geovision" in loaded
    assert not loaded & {"flask", "werkzeug", "app", "train", "segmentation_models_pytorch", "timm"}


def test_the_server_runs_without_the_training_package(tmp_path):
    loaded = _loaded_after(
        "from app import create_app\n"
        f"app = create_app({{'TESTING': True, 'SECRET_KEY': 'x', 'SQLALCHEMY_DATABASE_URI': 'sqlite://',"
        f" 'INSTANCE_PATH': {str(tmp_path)!r}, 'MODEL_DIR': {str(ROOT / 'models')!r}}}, wait_for_models=True)\n"
        "assert app.extensions['engine'].status == 'ready', app.extensions['engine'].errors")
    assert {"app", "flask", "geovision"} <= loaded
    assert not loaded & {"train", "segmentation_models_pytorch", "timm"}


def test_modules_and_functions_stay_small():
    """No module of the server or the core over 300 lines, no function over 60 lines outside train/."""
    import ast

    long_modules, long_functions = [], []
    for package in ("app", "geovision", "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if package != "bench" and text.count("\n") > 300:
                long_modules.append(str(path.relative_to(ROOT)))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long_modules and not long_functions, (long_modules, long_functions)
