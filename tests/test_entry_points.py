"""Console scripts (setup.py `entry_points`) and the thin tools/*.py: both are the programs in
mdistiller/cli/; a tool edits sys.path only when the package is not importable."""
import importlib
import importlib.metadata
import importlib.util
import json
import os
import runpy
import subprocess
import sys

import pytest
import setuptools

from helpers.tiny import REPO, subprocess_env

REQUIRED = {"mdistiller-train", "mdistiller-eval", "mdistiller-benchmark", "mdistiller-analyze", "mdistiller-demo"}


def declared_scripts(monkeypatch):
    """{script name: "module:function"} from setup.py, read by running it with setup() captured."""
    captured = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO)
    runpy.run_path(os.path.join(REPO, "setup.py"))
    scripts = captured["entry_points"]["console_scripts"]
    return dict(line.replace(" ", "").split("=", 1) for line in scripts)


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"entry_tool_{name}", os.path.join(REPO, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_console_script_is_its_tools_program_and_answers_help(monkeypatch, capsys):
    scripts = declared_scripts(monkeypatch)
    assert REQUIRED <= set(scripts)
    for script, target in scripts.items():
        module_name, function = target.split(":")
        main = getattr(importlib.import_module(module_name), function)
        assert callable(main)
        tool = module_name.rsplit(".", 1)[1]
        assert script == "mdistiller-" + tool.replace("_", "-")
        before = list(sys.path)
        assert load_tool(tool).main is main  # tools/<tool>.py is the same program
        assert sys.path == before  # the package is importable: the tool leaves sys.path alone
        with pytest.raises(SystemExit) as done:
            main(["--help"])
        assert done.value.code == 0 and capsys.readouterr().out.startswith(f"usage: {script} [-h]")


def test_the_installed_distribution_declares_the_same_scripts(monkeypatch):
    """Where the installed mdistiller is this clone (CI installs it), its metadata lists them."""
    # Run from the clone, the source folder's own mdistiller.egg-info is found too (it has no
    # direct_url.json): look at every distribution of that name for the one installed from here.
    urls = {}
    for dist in importlib.metadata.distributions(name="mdistiller"):
        url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
        urls[url] = dist
        if url.startswith("file://") and os.path.realpath(url[len("file://"):]) == os.path.realpath(REPO):
            break
    else:
        pytest.skip(f"no installed mdistiller comes from this clone (found: {sorted(urls) or 'none'})")
    installed = {ep.name: ep.value.replace(" ", "") for ep in dist.entry_points if ep.group == "console_scripts"}
    assert installed == declared_scripts(monkeypatch)


def test_a_tool_runs_from_another_folder(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(REPO, "tools", "train.py"), "--help"], cwd=str(tmp_path),
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--plugin MODULE" in done.stdout
    assert done.stdout.startswith("usage: train.py [-h]")  # the program's name, as it was started


def test_a_clone_without_the_package_installed_puts_itself_on_sys_path(monkeypatch):
    """The one case a tool edits sys.path: `mdistiller` is not importable (a clone, not installed)."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mdistiller" else
                        find_spec(name, *a))
    monkeypatch.setattr(sys, "path", list(sys.path))
    load_tool("eval")
    assert sys.path[0] == REPO
