"""The Makefile's choice of environment: a project venv for a plain python, an active venv or
conda env as it is. Dry runs (`make -n`) show what `make test` would run; the error paths run
for real, with the venv and the install stamp under tmp_path so the checkout is left alone."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# make passes these to sub-makes and reads variables from the environment: an outer
# `make test PYTHON=...` (CI runs the suite through make) must not leak into the runs here.
_MAKE_ENV_KEYS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "PYTHON", "VENV", "NO_VENV",
                  "STAMP", "EXTRAS", "VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME", "PYTHONPATH", "TORCH_CPU",
                  "SEEDS")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _base_python():
    """The interpreter this venv (if any) was made from, when it is a plain, non-conda python."""
    base = shutil.which("python3", path=os.path.join(sys.base_prefix, "bin"))
    if base is None or os.path.isdir(os.path.join(sys.base_prefix, "conda-meta")):
        pytest.skip("needs a plain (non-conda) python3 beside this interpreter")
    return base


def _make(tmp_path, *args, dry=True, target="test", **env):
    clean = {k: v for k, v in os.environ.items() if k not in _MAKE_ENV_KEYS}
    clean.update(env)
    flags = ["-n"] if dry else []
    cmd = ["make", "--no-print-directory", *flags, target, f"STAMP={tmp_path / 'stamp'}", *args]
    return subprocess.run(cmd, cwd=REPO, env=clean, capture_output=True, text=True, timeout=60)


def test_plain_python_gets_a_project_venv(tmp_path):
    base, venv = _base_python(), tmp_path / "venv"
    out = _make(tmp_path, f"PYTHON={base}", f"VENV={venv}").stdout
    assert f"{base} -m venv {venv}\n" in out
    assert f"{venv}/bin/python -m pip install -e" in out
    assert out.rstrip().endswith(f"{venv}/bin/python -m pytest -q")


def test_torch_cpu_installs_torch_from_the_cpu_wheel_index(tmp_path):
    base, venv = _base_python(), tmp_path / "venv"
    default = _make(tmp_path, f"PYTHON={base}", f"VENV={venv}").stdout
    assert "torch==" in default and "--index-url" not in default
    cpu = _make(tmp_path, f"PYTHON={base}", f"VENV={venv}", "TORCH_CPU=1").stdout
    index = "-m pip install --index-url https://download.pytorch.org/whl/cpu"
    assert f"{index} torch==" in cpu and f'{index} "torch>=2.5"' in cpu  # the pinned and the fallback install


def test_demo_takes_its_seeds_from_seeds(tmp_path):
    base, venv = _base_python(), tmp_path / "venv"
    for extra, seeds in (([], "--seeds 0"), (["SEEDS=0 1 2"], "--seeds 0 1 2")):
        out = _make(tmp_path, f"PYTHON={base}", f"VENV={venv}", *extra, target="demo").stdout
        assert out.rstrip().endswith(f"{venv}/bin/python tools/demo.py {seeds}")


def test_venv_left_without_pip_is_made_again(tmp_path):
    # `python -m venv` without ensurepip leaves bin/python but no bin/pip behind.
    base, venv = _base_python(), tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(base)
    out = _make(tmp_path, f"PYTHON={base}", f"VENV={venv}").stdout
    assert f"{base} -m venv {venv}\n" in out


def test_active_venv_is_used_as_is(tmp_path):
    env_dir = tmp_path / "myenv"
    subprocess.run([_base_python(), "-m", "venv", "--without-pip", str(env_dir)], check=True)
    path = f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}"
    out = _make(tmp_path, f"VENV={tmp_path / 'venv'}", VIRTUAL_ENV=str(env_dir), PATH=path).stdout
    assert "-m venv" not in out
    assert f'echo "{env_dir}" >' in out  # the stamp records the active env
    assert out.rstrip().endswith("python3 -m pytest -q")


def _fake_conda_env(tmp_path):
    """A python whose sys.prefix is a folder with conda-meta/, as in a conda env (PYTHONHOME
    moves the prefix; the standard library is linked in so that the interpreter still runs)."""
    prefix = tmp_path / "conda"
    (prefix / "conda-meta").mkdir(parents=True)
    (prefix / "lib").mkdir()
    stdlib = Path(os.__file__).parent
    (prefix / "lib" / stdlib.name).symlink_to(stdlib)
    (prefix / "bin").mkdir()
    python = prefix / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONHOME="{prefix}" exec "{_base_python()}" "$@"\n')
    python.chmod(0o755)
    return prefix, python


def test_conda_env_is_used_as_is(tmp_path):
    prefix, python = _fake_conda_env(tmp_path)
    out = _make(tmp_path, f"PYTHON={python}", f"VENV={tmp_path / 'venv'}").stdout
    assert "-m venv" not in out
    assert f'echo "{prefix}" >' in out
    assert out.rstrip().endswith(f"{python} -m pytest -q")


def test_no_venv_installs_into_the_given_python(tmp_path):
    base = _base_python()
    out = _make(tmp_path, f"PYTHON={base}", f"VENV={tmp_path / 'venv'}", "NO_VENV=1").stdout
    assert "-m venv" not in out
    assert f"{base} -m pip install -e" in out


def test_install_is_skipped_for_the_same_env_and_redone_for_another(tmp_path):
    venv = tmp_path / "venv"
    args = (f"PYTHON={_base_python()}", f"VENV={venv}")
    (tmp_path / "stamp").write_text(f"{venv}\n")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "pip").touch()
    out = _make(tmp_path, *args).stdout
    assert "pip install" not in out and out.rstrip().endswith("-m pytest -q")
    (tmp_path / "stamp").write_text("/some/other/env\n")
    assert "pip install -e" in _make(tmp_path, *args).stdout


def test_python_without_ensurepip_stops_with_the_package_to_install(tmp_path):
    # An ensurepip that fails to import, as on Debian/Ubuntu without python3-venv.
    (tmp_path / "fake" / "ensurepip").mkdir(parents=True)
    (tmp_path / "fake" / "ensurepip" / "__init__.py").write_text("raise ImportError('absent')\n")
    venv = tmp_path / "venv"
    run = _make(tmp_path, f"PYTHON={_base_python()}", f"VENV={venv}", dry=False,
                PYTHONPATH=str(tmp_path / "fake"))
    assert run.returncode != 0
    ours = [line for line in run.stderr.splitlines() if "***" not in line]
    assert len(ours) == 1 and "apt install python3-venv" in ours[0], run.stderr
    assert not venv.exists()


def test_python_that_does_not_run_is_named(tmp_path):
    run = _make(tmp_path, "PYTHON=/nonexistent/python3", f"VENV={tmp_path / 'venv'}", dry=False)
    assert run.returncode != 0
    assert "make: PYTHON=/nonexistent/python3 does not run" in run.stderr
    assert not (tmp_path / "stamp").exists()
