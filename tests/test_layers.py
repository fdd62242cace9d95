"""The package's import order (DESIGN.md, "Layers"): imports only go down, and nothing imports
in a circle, neither sub-packages nor modules (function-level imports count: they hide cycles,
they do not remove them).

Every module under mdistiller/ is parsed with `ast`; relative imports are resolved and
`importlib.import_module("...")` calls with a literal name count as imports.
"""
import ast
import os
from collections import defaultdict

PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "mdistiller")

# Sub-package (or top-level module) -> layer; a module may import from its own layer (when no
# cycle results) and from lower ones. `runtime` is the leaf every layer above it may use
# (checkpoint files, safe writes, device choice); `plugins` imports user modules for `config`;
# `cli` holds the programs behind tools/*.py and the console scripts, on top of everything.
# `dataset` is mdistiller's module path for its scripts' loaders (get_dataset): an adapter over
# `data` and the engine's config handling, so above the engine.
LAYERS = {"errors": 0, "config": 0, "plugins": 0, "runtime": 1, "models": 2, "data": 2, "distillers": 2,
          "engine": 3, "benchmark": 4, "analysis": 4, "dataset": 4, "cli": 5}
# Module names that may repeat: the model zoo's architecture files keep mdistiller's names (one
# folder per dataset), `cli/` names each program after its tools/*.py script, `dataset/` keeps
# mdistiller's module paths (dataset/imagenet.py), and `build` / `registry` name a role every
# sub-package may have.
REPEATABLE_NAMES = {"__init__", "build", "registry"}
NAMED_AFTER_FOLDERS = ("models/cifar/", "models/imagenet/", "models/tiny_imagenet/", "cli/", "dataset/")


def module_files():
    """{dotted module name: path} of every .py file in the package."""
    found = {}
    for folder, _, files in os.walk(PACKAGE_DIR):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].replace(os.sep, ".")
                found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = path
    return found


def _resolve(name, level, module, is_package):
    """The absolute dotted name of a (possibly relative) import written in `module`."""
    if not level:
        return name
    parts = module.split(".") if is_package else module.split(".")[:-1]
    base = parts[:len(parts) - level + 1]
    return ".".join(base + ([name] if name else []))


def _importlib_target(node):
    """The literal module name of an `importlib.import_module("...")` call, else None."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
        value = node.args[0].value
        return value if isinstance(value, str) else None
    return None


def imported_names(module, path):
    """Absolute dotted names `module` imports (anywhere in the file), package-internal or not."""
    is_package = path.endswith("__init__.py")
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node.module, node.level, module, is_package)
            names += [f"{target}.{alias.name}" for alias in node.names]  # a name, or a sub-module
        elif isinstance(node, ast.Call):
            target = _importlib_target(node)
            if target:
                names.append(_resolve(target.lstrip("."), len(target) - len(target.lstrip(".")), module, is_package))
    return names


def module_graph():
    """{module: {modules it imports}} within the package (a name imported from a package counts
    as the package's __init__ unless it is a sub-module)."""
    modules = module_files()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module and name != "mdistiller":
                targets.add(name)
        graph[module] = targets
    return graph


def sub_package(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan), each a sorted list."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
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
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _edges_within(graph, members):
    return [f"{a} -> {b}" for a in members for b in sorted(graph.get(a, ())) if b in members]


def test_every_sub_package_has_a_layer():
    unknown = sorted({sub_package(m) for m in module_graph()} - set(LAYERS) - {None})
    assert not unknown, f"sub-packages without a layer in tests/test_layers.py LAYERS: {unknown}"


def test_imports_only_go_down():
    graph = module_graph()
    upward = [f"{a} -> {b}" for a in sorted(graph) for b in sorted(graph[a])
              if sub_package(a) and sub_package(b) and LAYERS.get(sub_package(b), 0) > LAYERS.get(sub_package(a), 0)]
    assert not upward, "imports that go up the layer order:\n  " + "\n  ".join(upward)


def test_the_package_never_imports_the_tools_or_the_tests():
    found = [f"{module} -> {name}" for module, path in sorted(module_files().items())
             for name in imported_names(module, path) if name.split(".")[0] in ("tools", "tests")]
    assert not found, "imports of the command lines or tests from the package:\n  " + "\n  ".join(found)


def test_no_cycle_between_sub_packages():
    graph = module_graph()
    packages = defaultdict(set)
    for a, targets in graph.items():
        for b in targets:
            if sub_package(a) and sub_package(b) and sub_package(a) != sub_package(b):
                packages[sub_package(a)].add(sub_package(b))
    found = cycles(packages)
    detail = [f"{members}: " + ", ".join(
        f"{a} -> {b}" for a in sorted(graph) for b in sorted(graph[a])
        if sub_package(a) in members and sub_package(b) in members and sub_package(a) != sub_package(b))
        for members in found]
    assert not found, "sub-packages importing each other:\n  " + "\n  ".join(detail)


def test_no_cycle_between_modules():
    graph = module_graph()
    found = cycles(graph)
    assert not found, "modules importing each other:\n  " + "\n  ".join(
        ", ".join(_edges_within(graph, members)) for members in found)


def test_module_names_are_unique():
    by_name = defaultdict(list)
    for module, path in module_files().items():
        rel = os.path.relpath(path, PACKAGE_DIR).replace(os.sep, "/")
        name = os.path.basename(path)[:-3]
        if name not in REPEATABLE_NAMES and not rel.startswith(NAMED_AFTER_FOLDERS):
            by_name[name].append(module)
    repeated = {name: modules for name, modules in by_name.items() if len(modules) > 1}
    assert not repeated, f"module names used twice (rename one): {repeated}"


def test_the_checks_see_what_they_check(tmp_path):
    """The parser and the cycle finder on known input: a function-level relative import and an
    importlib call are edges, and a two-module circle is found."""
    path = tmp_path / "m.py"
    path.write_text("import importlib\n\ndef f():\n    from ..engine import trainer\n"
                    "    importlib.import_module('mdistiller.data.fast')\n")
    names = imported_names("mdistiller.data.m", str(path))
    assert "mdistiller.engine.trainer" in names and "mdistiller.data.fast" in names
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
