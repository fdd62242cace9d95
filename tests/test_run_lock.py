"""engine/run_lock.py: one claimant per run folder; a lock whose holder is gone is taken over."""
import json
import os
import socket
import subprocess
import sys

from mdistiller.engine.run_lock import claimed, lock_path, read_lock, release, try_claim


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(folder, **holder):
    with open(lock_path(folder), "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "job_id": None, "since": "t", **holder}, f)


def test_claim_names_the_holder_and_release_removes_it(tmp_path):
    run = tmp_path / "p" / "KD,pair,seed0"
    assert try_claim(run) == (True, None)
    holder = read_lock(run)
    assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid() and holder["job_id"] is None
    assert lock_path(run) == str(run) + ".lock" and not run.exists()  # beside the folder, not in it
    release(run)
    assert read_lock(run) is None


def test_a_live_holder_keeps_the_run(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(tmp_path / "run", pid=sleeper.pid)
        ok, holder = try_claim(tmp_path / "run")
        assert not ok and holder["pid"] == sleeper.pid
        with claimed([tmp_path / "other", tmp_path / "run"]) as held:
            assert held[0] == tmp_path / "run"
        assert read_lock(tmp_path / "other") is None  # all or none: the first claim was given back
        release(tmp_path / "run")  # not ours: stays
        assert read_lock(tmp_path / "run")["pid"] == sleeper.pid
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_lock_of_a_dead_process_or_of_this_requeued_job_is_taken_over(tmp_path, monkeypatch):
    write_lock(tmp_path / "run", pid=dead_pid())
    assert try_claim(tmp_path / "run") == (True, None) and read_lock(tmp_path / "run")["pid"] == os.getpid()
    # a reused pid: alive, but not the process that wrote the lock (another start time)
    write_lock(tmp_path / "reused", pid=os.getpid(), pid_start=1)
    assert try_claim(tmp_path / "reused")[0]
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    write_lock(tmp_path / "job", pid=dead_pid(), job_id="77", host="another-node")
    assert try_claim(tmp_path / "job")[0] and read_lock(tmp_path / "job")["job_id"] == "77"
    assert not [n for n in os.listdir(tmp_path) if ".stale." in n]


def test_a_process_on_another_host_without_a_job_cannot_be_checked_and_keeps_the_run(tmp_path):
    write_lock(tmp_path / "run", host="elsewhere", pid=dead_pid())
    ok, holder = try_claim(tmp_path / "run")
    assert not ok and holder["host"] == "elsewhere"


def test_two_launchers_inside_one_slurm_allocation_do_not_take_each_others_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        write_lock(tmp_path / "run", pid=sleeper.pid, job_id="78")
        assert not try_claim(tmp_path / "run")[0]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert try_claim(tmp_path / "run")[0]  # that launcher is gone now: an earlier attempt
