"""The house: floors in data-flow order, no import circles, small modules, no re-exports."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "apnet_tf"
ROOT = PACKAGE.parent
SUBPACKAGES = ("io", "data", "model", "labels", "inference", "calibration", "evaluation",
               "export", "training", "cli")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
#: Imports of the package inside a function that stay there, each with its reason: the FITS
#: reader workers of make-records and infer must start without TensorFlow, and only the
#: shard-reading path of the same module needs it.
LAZY_IMPORTS_ALLOWED = {
    ("data/readers.py", "apnet_tf.data.record_counts"),
    ("data/readers.py", "apnet_tf.data.record_schema"),
}


#: The package's two faces, the command line and the notebook API: they import the library
#: inside their functions, so that ``apnet-tf --help`` and ``import apnet_tf`` stay quick.
TOP_FLOOR = ("cli/", "api.py")
#: The only names ``apnet_tf/__init__.py`` exposes from elsewhere: the notebook API.
NOTEBOOK_NAMES = {"load", "Model", "fit", "make_records", "read_apstar", "read_boss"}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _rel(path: pathlib.Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_lint_imports_keeps_every_contract():
    exe = pathlib.Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (pip install '.[test]')")
    proc = subprocess.run([str(exe), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_the_layers_contract_names_every_subpackage():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")
    named = {name.strip() for layer in layers["layers"] for name in layer.split("|")}
    on_disk = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    on_disk |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert named == on_disk
    assert layers["exhaustive"] is True


def test_the_import_graph_has_no_circles():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("apnet_tf")
    modules = sorted(graph.modules)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) & set(modules)
             for m in modules}
    # Tarjan's strongly connected components: a component of two or more modules is a circle.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for m in modules:
        if m not in index:
            visit(m)
    assert circles == []


def test_modules_and_functions_are_small():
    too_long = []
    for path in _modules():
        src = path.read_text()
        if src.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{_rel(path)}: {src.count(chr(10))} lines")
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    too_long.append(f"{_rel(path)}:{node.lineno} {node.name}: {n} lines")
    assert too_long == []


def test_no_reexports_and_no_hidden_imports():
    found = []
    for path in _modules():
        rel, src = _rel(path), path.read_text()
        if "noqa: F401" in src:
            found.append(f"{rel}: noqa: F401")
        tree = ast.parse(src)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("apnet_tf")
                        and not rel.startswith(TOP_FLOOR)
                        and (rel, node.module) not in LAZY_IMPORTS_ALLOWED):
                    found.append(f"{rel}:{node.lineno} imports {node.module} inside {fn.name}")
    assert found == []


def test_the_top_level_exposes_only_the_notebook_api():
    """``apnet_tf/__init__.py`` imports nothing of the package at import time but the Keras
    registration, and exposes, on first use, the notebook API's names from the modules that
    define them."""
    import importlib

    import apnet_tf

    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    imported = {alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert imported == {"install"}  # apnet_tf.registration's
    assert set(apnet_tf.NOTEBOOK_API) == NOTEBOOK_NAMES
    assert set(apnet_tf.__all__) == NOTEBOOK_NAMES | {"__version__"}
    for name, module in apnet_tf.NOTEBOOK_API.items():
        obj = getattr(importlib.import_module(module), name)
        assert obj.__module__ == module, name  # defined there, not passed on
        assert getattr(apnet_tf, name) is obj


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_each_subpackage_says_what_it_holds_and_reexports_nothing(name):
    init = PACKAGE / name / "__init__.py"
    tree = ast.parse(init.read_text())
    doc = ast.get_docstring(tree)
    assert doc and "May import" in doc
    assert not [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    declared = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", "") == "__all__" for t in n.targets))
    modules = sorted(p.stem for p in (PACKAGE / name).glob("*.py") if not p.stem.startswith("__"))
    assert sorted(declared) == modules


def test_every_module_lists_its_public_names():
    missing = []
    for path in _modules():
        if path.name in ("__init__.py", "__main__.py"):
            continue
        tree = ast.parse(path.read_text())
        declared = [n for n in tree.body if isinstance(n, ast.Assign)
                    and any(getattr(t, "id", "") == "__all__" for t in n.targets)]
        if not declared:
            missing.append(_rel(path))
            continue
        names = ast.literal_eval(declared[0].value)
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets
                    if isinstance(t, ast.Name)}
        missing += [f"{_rel(path)}: {n} is not defined there" for n in names if n not in defined]
    assert missing == []


def test_help_imports_no_tensorflow():
    code = ("import sys\nfrom apnet_tf.cli.app import app\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_every_keras_class_has_a_registered_name_of_its_own():
    """Two classes registered under one name ("apnet_tf>PhotometryScaling" was both the YSO
    network's and Net II's) make whichever module was imported last load both kinds of file."""
    import inspect

    import keras

    import apnet_tf.labels.yso
    import apnet_tf.model.network
    import apnet_tf.model.published

    seen = {}
    for module in (apnet_tf.model.network, apnet_tf.model.published, apnet_tf.labels.yso):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(
                    cls, (keras.layers.Layer, keras.losses.Loss)):
                continue
            name = keras.saving.get_registered_name(cls)
            assert name not in seen, f"{name}: {seen.get(name)} and {cls}"
            seen[name] = cls
            assert keras.saving.get_registered_object(name) is cls, name
    assert len(seen) >= 6
