"""tools/reliability.py: the end-to-end replay of the trust cases counts what it promises to.

The baseline group runs in the default suite (it checks the counters themselves: a clean run
counts zero); the whole replay, every group, is marked slow.
"""
import subprocess
import sys

import pytest

from helpers.tiny import REPO, subprocess_env
from helpers.tools import load_tool


def test_a_clean_run_counts_zero_and_a_broken_case_counts(tmp_path):
    tool = load_tool("reliability")
    ctx = tool.Context(tmp_path)
    ctx.case = "probe"
    outside = tmp_path / "victim.txt"
    outside.write_text("keep me")
    # a command that writes outside output/ and prints a traceback is counted twice
    ctx.run(argv=[sys.executable, "-c", f"open({str(outside)!r}, 'w').write('x'); raise ValueError('boom')"])
    assert ctx.counts["files outside run folders touched"] == 1
    assert ctx.counts["tracebacks"] == 1
    # a recorded result that disappears is counted as lost; one moved under replaced/ is not
    run = ctx.output / "p" / "r"
    run.mkdir(parents=True)
    (run / "student_best").write_bytes(b"weights")
    (run / "worklog.txt").write_text("epoch 1")
    token = ctx.keep_results(run)
    (run / "replaced" / "1").mkdir(parents=True)
    (run / "student_best").rename(run / "replaced" / "1" / "student_best")
    assert ctx.check_results(token)
    (run / "worklog.txt").unlink()
    assert not ctx.check_results(token)
    assert ctx.counts["results lost"] == 1
    # hostile code leaves a marker when imported
    ctx.hostile_module(tmp_path / "mods")
    subprocess.run([sys.executable, "-c", "import hostile_probe"], cwd=tmp_path / "mods", env=ctx.env(), check=True)
    assert len(list(ctx.markers.iterdir())) == 1


def test_the_baseline_group_passes():
    done = subprocess.run([sys.executable, "tools/reliability.py", "--only", "s0"], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "code executed 0, files outside run folders touched 0, results lost 0, tracebacks 0" in done.stdout


@pytest.mark.slow
def test_the_whole_replay_counts_zero():
    done = subprocess.run([sys.executable, "tools/reliability.py"], cwd=REPO, env=subprocess_env(),
                          capture_output=True, text=True, timeout=3000)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
