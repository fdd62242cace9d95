"""Rules for the test suite itself, checked on the source (ast) of every module under tests/:
- no module imports a `test_*.py` module, function-level imports included (shared fixtures
  live in conftest.py, shared plain helpers in tests/helpers/);
- no module sets torch's thread count at import time (conftest.py's autouse fixtures set one
  value for the whole suite; a test or a fixture may still choose its own for its duration).
"""
import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MODULES = sorted(TESTS.glob("*.py")) + sorted(TESTS.glob("helpers/*.py"))
TEST_MODULES = frozenset(path.stem for path in TESTS.glob("test_*.py"))
THREAD_SETTERS = ("set_num_threads", "set_num_interop_threads")


def imports_of_test_modules(tree, test_modules):
    """'line N: name' for every import (at any depth) of a module in `test_modules` or under tests."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module] if node.module else [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names
                  if name.split(".")[0] in test_modules or name.startswith("tests.")]
    return [f"line {line}: {name}" for line, name in sorted(found)]


def thread_settings_at_import(tree):
    """'line N' for every torch thread-count call that runs when the module is imported: anywhere
    outside a function body (module level, class bodies, if/with/try blocks)."""
    found, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in THREAD_SETTERS:
                found.append(node.lineno)
        stack.extend(ast.iter_child_nodes(node))
    return [f"line {line}" for line in sorted(found)]


def parse(path):
    return ast.parse(path.read_text(), str(path))


def module_id(path):
    return str(path.relative_to(TESTS))


@pytest.mark.parametrize("path", MODULES, ids=module_id)
def test_no_module_imports_a_test_module(path):
    found = imports_of_test_modules(parse(path), TEST_MODULES)
    assert not found, (f"{module_id(path)} imports test modules ({', '.join(found)}): shared fixtures go in "
                       "tests/conftest.py, shared helpers in tests/helpers/")


@pytest.mark.parametrize("path", MODULES, ids=module_id)
def test_no_module_sets_threads_at_import(path):
    found = thread_settings_at_import(parse(path))
    assert not found, (f"{module_id(path)} sets torch's thread count at import time ({', '.join(found)}): "
                       "conftest.py's one_thread fixture sets it for the whole suite")


CAUGHT = """import torch
from test_x import a

def f():
    import test_y
    torch.set_num_threads(2)

class C:
    torch.set_num_threads(1)

if True:
    set_num_interop_threads(1)
from tests.test_z import b
import helpers.tiny
from helpers.data import cfg_for
"""


def test_the_checks_catch_what_they_forbid():
    tree = ast.parse(CAUGHT)
    assert imports_of_test_modules(tree, {"test_x", "test_y"}) == [
        "line 2: test_x", "line 5: test_y", "line 13: tests.test_z"]
    assert thread_settings_at_import(tree) == ["line 9", "line 12"]
