"""The library (refnet/ but for refnet/commands/ and the entry points cli.py and __main__.py)
stands without the commands, and no two of its modules import each other, counting the imports
made inside functions."""

import ast
import os
import subprocess
import sys

import refnet

PACKAGE_DIR = os.path.dirname(refnet.__file__)
ROOT = os.path.dirname(PACKAGE_DIR)
ENTRY_POINTS = {(PACKAGE_DIR, "cli.py"), (PACKAGE_DIR, "__main__.py")}


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[: -len(".py")].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def _library_modules():
    modules = {}
    for folder, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = [d for d in dirs if d not in ("commands", "__pycache__")]
        for name in files:
            if name.endswith(".py") and (folder, name) not in ENTRY_POINTS:
                path = os.path.join(folder, name)
                modules[_module_name(path)] = path
    return modules


def _imports(module, path):
    """Every refnet module named by an import statement anywhere in the file (top level or in a function)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "refnet" or name.startswith("refnet.")}


def test_the_library_never_imports_the_commands():
    offenders = {module: sorted(n for n in _imports(module, path) if n.startswith("refnet.commands") or n == "refnet.cli")
                 for module, path in _library_modules().items()}
    assert {m: names for m, names in offenders.items() if names} == {}


def test_no_two_library_modules_import_each_other():
    modules = _library_modules()
    graph = {m: {n for n in _imports(m, p) if n in modules and n != m} for m, p in modules.items()}
    # refnet/__init__.py and the package __init__s re-export their children; a child naming its own
    # package (from . import ops) is not a circle of two modules that each need the other.
    circles = sorted((a, b) for a in graph for b in graph[a]
                     if a < b and a in graph.get(b, ()) and not b.startswith(a + ".") and not a.startswith(b + "."))
    assert circles == []


def test_library_imports_with_the_commands_unavailable():
    code = (
        "import sys; sys.modules['refnet.commands'] = None\n"
        "import refnet.model, refnet.ops, refnet.data, refnet.trainer, refnet.checkpoint, refnet.evaluate,"
        " refnet.distributed, refnet.summary, refnet.metrics\n"
        "net = refnet.model.build_layers('seed', 10, 67, dropout=0.5)\n"
        "print(refnet.summary.format_summary(net, 'seed', 67, 'pool-lrn').splitlines()[0])\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "AlexNet, variant seed: input 3x67x67, 10 classes" in done.stdout


def test_an_op_named_like_its_module_stays_the_op_whichever_is_asked_first():
    code = ("import refnet.ops as ops\n"
            "ops.softmax_cross_entropy_backward\n"
            "assert callable(ops.softmax_cross_entropy), ops.softmax_cross_entropy\n")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
