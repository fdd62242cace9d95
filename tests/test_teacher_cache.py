"""Teacher-output replay (engine/teacher_cache.py, tools/teacher_cache.py): a run that reads its
teacher's logits from a cache ends bit-identical to one that runs its teacher (KD, DKD, MLKD,
SLD; both loaders; solo and paired); a cache whose stream differs in any component is refused
with the reason; a killed cache job resumes to the same files, and a student never reads a
half-written epoch, and one that starts while the cache is written waits for each epoch.

The kill test runs the job as a child process (`python tests/test_teacher_cache.py ...`, see
`child`) so that a real SIGKILL hits it while it writes an epoch file.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.distillers.base import teacher_pass
from mdistiller.engine.build import train, train_paired
from mdistiller.engine.checkpoint import load_checkpoint
from mdistiller.engine.device import resolve_device
from mdistiller.engine.teacher_cache import create_cache, epoch_path, epochs_done, find_cache, stream_identity
from mdistiller.engine.teacher_cache_job import write_teacher_cache
from mdistiller.models import create_model
from helpers.data import cifar_folder
from helpers.tiny import REPO, subprocess_env
from helpers.zoo_runs import assert_same_weights, latest

METHODS = {"KD": [], "DKD": ["DKD.WARMUP", "1"], "MLKD": [], "SLD": ["SLD.GAMMA", "1"]}
TWO_VIEWS = ("MLKD", "SLD")
PAUSE_S = 8  # the paused cache job: long enough for a student to start, replay two epochs and wait


@pytest.fixture(scope="module")
def cifar_and_teacher(tmp_path_factory):
    """A CIFAR-100 image-folder tree (1 image per class and split) and a random resnet8 teacher."""
    root = tmp_path_factory.mktemp("replay_data")
    cifar_folder(root / "cifar", 1, 1)
    torch.manual_seed(5)
    teacher = root / "teacher.pth"
    torch.save({"model": create_model("resnet8", 100, "cifar100").state_dict()}, teacher)
    return str(root), str(teacher)


def cfg_for(data, prefix, name, method, *extra, cache="off", loader="pil", epochs=2):
    root, teacher = data
    return load_cfg(None, ["DEVICE", "cpu", "DATASET.TYPE", "cifar100", "DATASET.ROOT", os.path.join(root, "cifar"),
                           "DATASET.CACHE_DIR", os.path.join(root, "decoded"), "DATASET.LOADER", loader,
                           "DATASET.NUM_WORKERS", "0", "DATASET.TRAIN_SUBSET", "40", "DATASET.TEST_SUBSET", "20",
                           "SOLVER.BATCH_SIZE", "16", "SOLVER.EPOCHS", str(epochs), "LOG.PREFIX", str(prefix),
                           "LOG.QUIET", "True", "EXPERIMENT.PROJECT", "p", "EXPERIMENT.NAME", name,
                           "DISTILLER.TYPE", method, "DISTILLER.STUDENT", "resnet8", "DISTILLER.TEACHER", "resnet8",
                           "DISTILLER.TEACHER_WEIGHTS", teacher, "DISTILLER.TEACHER_CACHE", cache,
                           *METHODS.get(method, []), *extra])


def worklog(cfg):
    return open(os.path.join(cfg.LOG.PREFIX, "p", cfg.EXPERIMENT.NAME, "worklog.txt")).read()


def assert_same_runs(live, replayed):
    for a, b in zip(live, replayed):
        assert_same_weights(latest(a), latest(b))
        assert worklog(a) == worklog(b)


def live_and_replayed(data, tmp_path, methods, loader, paired, capsys):
    """Train `methods` live and replayed (the cache written first by the cache job)."""
    cache = str(tmp_path / "cache")
    live = [cfg_for(data, tmp_path / "live", m, m, loader=loader) for m in methods]
    replayed = [cfg_for(data, tmp_path / "replay", m, m, cache=cache, loader=loader) for m in methods]
    two = any(m in TWO_VIEWS for m in methods)
    views_needed = {2} if paired and two else {2 if m in TWO_VIEWS else 1 for m in methods}
    for views in views_needed:
        write_teacher_cache(cfg_for(data, tmp_path / "job", "job", methods[0], cache=cache, loader=loader), views)
    capsys.readouterr()
    if paired:
        train_paired(live)
        train_paired(replayed)
    else:
        for cfg in live + replayed:
            train(cfg)
    out = capsys.readouterr().out
    assert out.count("teacher cache: replaying") == (1 if paired else len(methods)), out
    assert "running the teacher" not in out
    assert_same_runs(live, replayed)


@pytest.mark.parametrize("methods, loader, paired", [
    (["KD", "SLD"], "pil", False),
    (["KD", "SLD"], "fast", True),
])
def test_replayed_runs_equal_live_runs(cifar_and_teacher, tmp_path, capsys, methods, loader, paired):
    live_and_replayed(cifar_and_teacher, tmp_path, methods, loader, paired, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("loader", ["pil", "fast"])
@pytest.mark.parametrize("paired", [False, True])
def test_replay_is_exact_for_the_four_logit_methods(cifar_and_teacher, tmp_path, capsys, loader, paired):
    live_and_replayed(cifar_and_teacher, tmp_path, list(METHODS), loader, paired, capsys)


def test_on_the_fast_loader_one_view_runs_replay_a_two_view_cache(cifar_and_teacher, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    write_teacher_cache(cfg_for(cifar_and_teacher, tmp_path / "job", "job", "SLD", cache=cache, loader="fast"))
    live = [cfg_for(cifar_and_teacher, tmp_path / "live", m, m, loader="fast") for m in ("KD", "DKD")]
    replayed = [cfg_for(cifar_and_teacher, tmp_path / "replay", m, m, cache=cache, loader="fast") for m in ("KD", "DKD")]
    capsys.readouterr()
    for cfg in live + replayed:
        train(cfg)
    assert capsys.readouterr().out.count("teacher cache: replaying") == 2
    assert_same_runs(live, replayed)


def test_a_mixed_paired_group_equals_its_solo_runs_on_the_fast_loader(cifar_and_teacher, tmp_path):
    """The fast loader's one-view stream is its two-view stream's weak view, so one- and
    two-view methods in one group see exactly their solo data (the PIL loader's do not: README)."""
    methods = ["NONE", *METHODS]
    solo = [cfg_for(cifar_and_teacher, tmp_path / "solo", m, m, loader="fast") for m in methods]
    paired = [cfg_for(cifar_and_teacher, tmp_path / "paired", m, m, loader="fast") for m in methods]
    for cfg in solo:
        train(cfg)
    train_paired(paired)
    assert_same_runs(solo, paired)
    for a, b in zip(solo, paired):
        files = [os.path.join(c.LOG.PREFIX, "p", c.EXPERIMENT.NAME, "student_latest") for c in (a, b)]
        assert open(files[0], "rb").read() == open(files[1], "rb").read()


# ---------------------------------------------------------------- refusing another stream's cache
def identity_of(data, tmp_path, *extra, views=1, with_index=False, teacher_seed=5):
    cfg = cfg_for(data, tmp_path, "x", "KD", *extra)
    torch.manual_seed(teacher_seed)
    teacher = create_model("resnet8", 100, "cifar100")
    return stream_identity(cfg, teacher, resolve_device("cpu"), views, with_index)


@pytest.mark.parametrize("change, component", [
    (dict(extra=("SEED", "1")), "SEED"),
    (dict(extra=("SOLVER.BATCH_SIZE", "8")), "SOLVER.BATCH_SIZE"),
    (dict(extra=("DATASET.LOADER", "fast")), "DATASET.LOADER"),
    (dict(extra=("DATASET.TRAIN_SUBSET", "30")), "DATASET.TRAIN_SUBSET"),
    (dict(extra=("DATASET.NUM_WORKERS", "2")), "DATASET.NUM_WORKERS"),
    (dict(extra=("DATASET.TYPE", "imagefolder")), "DATASET.TYPE"),
    (dict(extra=("SOLVER.AMP", "bf16")), "SOLVER.AMP"),
    (dict(extra=("SOLVER.CHANNELS_LAST", "False")), "SOLVER.CHANNELS_LAST"),
    (dict(extra=("DISTILLER.TEACHER_CACHE_FP16", "True")), "storage"),
    (dict(views=2), "views"),
    (dict(with_index=True), "indices"),
    (dict(teacher_seed=6), "teacher weights sha256"),
])
def test_a_cache_of_another_stream_is_refused_with_the_component(cifar_and_teacher, tmp_path, change, component):
    root = str(tmp_path / "cache")
    base = identity_of(cifar_and_teacher, tmp_path)
    create_cache(root, base)
    assert find_cache(root, base)[0] is not None
    other = identity_of(cifar_and_teacher, tmp_path, *change.get("extra", ()), views=change.get("views", 1),
                        with_index=change.get("with_index", False), teacher_seed=change.get("teacher_seed", 5))
    folder, why = find_cache(root, other)
    assert folder is None
    assert why.startswith(f"the closest teacher cache {os.path.join(root, '')}") and f"differs in {component} " in why


def test_epochs_and_output_settings_do_not_split_streams(cifar_and_teacher, tmp_path):
    """Epoch e's batches do not depend on how many epochs follow, where outputs go or what the
    run is called: such runs share one cache."""
    base = identity_of(cifar_and_teacher, tmp_path)
    assert identity_of(cifar_and_teacher, tmp_path / "elsewhere", "SOLVER.EPOCHS", "240", "EXPERIMENT.NAME", "y",
                       "DISTILLER.TYPE", "DKD", "DATASET.TEST_SUBSET", "10") == base


def test_teacher_micro_batches_keep_the_bits_on_cpu():
    """Why DISTILLER.TEACHER_CHUNK is not part of a CPU stream's identity."""
    torch.manual_seed(0)
    teacher = create_model("resnet8", 100, "cifar100").eval()
    views = [torch.randn(40, 3, 32, 32), torch.randn(40, 3, 32, 32)]
    whole = teacher_pass(teacher, views, 0)
    for chunk in (8, 16, 64):
        assert all(torch.equal(a[0], b[0]) for a, b in zip(whole, teacher_pass(teacher, views, chunk)))


def test_a_run_says_why_it_runs_its_teacher(cifar_and_teacher, tmp_path, capsys):
    cache = str(tmp_path / "cache")
    write_teacher_cache(cfg_for(cifar_and_teacher, tmp_path, "job", "KD", cache=cache, epochs=1))
    capsys.readouterr()
    live = cfg_for(cifar_and_teacher, tmp_path / "live", "kd", "KD", "SEED", "3", epochs=1)
    other_seed = cfg_for(cifar_and_teacher, tmp_path / "run", "kd", "KD", "SEED", "3", cache=cache, epochs=1)
    train(live)
    train(other_seed)
    out = capsys.readouterr().out
    assert (f"teacher cache: not used (the closest teacher cache {cache}{os.sep}" in out
            and "differs in SEED (cache 0, this run 3)); running the teacher" in out), out
    assert_same_runs([live], [other_seed])
    train(cfg_for(cifar_and_teacher, tmp_path, "at", "AT", cache=cache, epochs=1))
    assert "teacher cache: not used (AT reads more of the teacher than its logits); running the teacher" in \
        capsys.readouterr().out


def test_a_cache_whose_batches_are_not_the_runs_stops_it(cifar_and_teacher, tmp_path):
    """A cache filed under this run's identity but holding another stream (as if the identity
    missed a setting): the sample-index check stops the run with one line."""
    import json
    import shutil

    from mdistiller.engine.teacher_cache import CacheMismatch, stream_key

    cache = str(tmp_path / "cache")
    other = write_teacher_cache(cfg_for(cifar_and_teacher, tmp_path, "job", "KD", "SEED", "1", cache=cache, epochs=1))
    run = cfg_for(cifar_and_teacher, tmp_path, "kd", "KD", cache=cache, epochs=1)
    identity = dict(json.load(open(os.path.join(other, "stream.json"))), SEED=0)
    shutil.move(other, os.path.join(cache, stream_key(identity)))
    with open(os.path.join(cache, stream_key(identity), "stream.json"), "w") as f:
        json.dump(identity, f)
    for name in os.listdir(os.path.join(cache, stream_key(identity))):  # its epoch files now name this folder
        if name.startswith("epoch_"):
            path = os.path.join(cache, stream_key(identity), name)
            torch.save(dict(load_checkpoint(path), key=stream_key(identity)), path)
    with pytest.raises(CacheMismatch, match=r"^teacher cache .* holds other samples than this run's batch at epoch 1, "
                                            r"iteration 1; set DISTILLER.TEACHER_CACHE off for this run"):
        train(run)


def test_the_job_refuses_a_config_without_cache_or_teacher(cifar_and_teacher, tmp_path):
    from mdistiller.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^config key DISTILLER.TEACHER_CACHE is off; set it on"):
        write_teacher_cache(cfg_for(cifar_and_teacher, tmp_path, "job", "KD"))
    with pytest.raises(ConfigError, match=r"^DISTILLER.TYPE NONE uses no teacher, so there is nothing to cache"):
        write_teacher_cache(cfg_for(cifar_and_teacher, tmp_path, "job", "NONE", cache="on"))


# ---------------------------------------------------------------- a killed cache job
def job_cfg(data, prefix, cache):
    """The cache job of a 3-epoch SLD run."""
    return cfg_for(data, prefix, "job", "SLD", cache=cache, epochs=3)


def job_command(data, prefix, cache, *flags):
    root, teacher = data
    return [sys.executable, os.path.abspath(__file__), root, teacher, str(prefix), cache, *flags]


def run_job(data, prefix, cache, *flags):
    return subprocess.run(job_command(data, prefix, cache, *flags), env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)


def start_job(data, prefix, cache, *flags):
    return subprocess.Popen(job_command(data, prefix, cache, *flags), env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # two child processes and a paused job: ~15 s of CPU, ~50 s on a loaded 2-core machine
def test_a_killed_cache_job_resumes_and_students_never_read_a_partial_epoch(cifar_and_teacher, tmp_path, capsys):
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    write_teacher_cache(job_cfg(cifar_and_teacher, tmp_path, straight))  # uninterrupted, in this process
    result = run_job(cifar_and_teacher, tmp_path, killed, "--kill-in-epoch", "2")
    assert result.returncode == -signal.SIGKILL, result.stderr
    (folder,) = [os.path.join(killed, f) for f in os.listdir(killed) if os.path.isdir(os.path.join(killed, f))]
    assert epochs_done(folder) == [1]
    assert any(name.startswith(".tmp_epoch_0002") for name in os.listdir(folder))  # the half-written epoch

    # A student now replays epoch 1 and runs its teacher for epoch 2 (the writer is gone): exact.
    live = cfg_for(cifar_and_teacher, tmp_path / "live", "sld", "SLD", epochs=3)
    replayed = cfg_for(cifar_and_teacher, tmp_path / "replay", "sld", "SLD", cache=killed, epochs=3)
    train(live)
    train(replayed)
    assert f"teacher cache {folder} has no epoch 2: running the teacher for it" in capsys.readouterr().out
    assert_same_runs([live], [replayed])

    # The job again: it goes on after epoch 1 and pauses before epoch 3, while a student that
    # started meanwhile replays epochs 1-2 and waits for epoch 3.
    resumed = start_job(cifar_and_teacher, tmp_path, killed, "--pause-before-epoch", "3")
    while not os.path.exists(epoch_path(folder, 2)) and resumed.poll() is None:
        time.sleep(0.05)
    waiting = cfg_for(cifar_and_teacher, tmp_path / "waiting", "sld", "SLD", cache=killed, epochs=3)
    train(waiting)
    out = capsys.readouterr().out
    assert f"waiting for epoch 3 of teacher cache {folder} (written by host" in out and "running the teacher" not in out
    assert_same_runs([live], [waiting])
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert "1 epoch(s) already complete" in stdout
    assert sorted(os.listdir(folder)) == sorted(os.listdir(os.path.join(straight, os.path.basename(folder))))
    for epoch in (1, 2, 3):
        a, b = (load_checkpoint(epoch_path(os.path.join(root, os.path.basename(folder)), epoch))
                for root in (straight, killed))
        assert a["sizes"] == b["sizes"] and torch.equal(a["index"], b["index"])
        assert all(torch.equal(x, y) for x, y in zip(a["logits"], b["logits"]))


def child(argv):
    """Child process: `job_cfg`'s cache job, optionally killed while it writes an epoch."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("root")
    parser.add_argument("teacher")
    parser.add_argument("prefix")
    parser.add_argument("cache")
    parser.add_argument("--kill-in-epoch", type=int, default=0, help="die half-way through writing this epoch's file")
    parser.add_argument("--pause-before-epoch", type=int, default=0, help="sleep PAUSE_S before this epoch")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.pause_before_epoch:
        from mdistiller.engine import teacher_cache_job

        real_write = teacher_cache_job.write_epoch

        def pausing_write(cfg, folder, epoch, *rest):
            if epoch == args.pause_before_epoch:
                time.sleep(PAUSE_S)
            return real_write(cfg, folder, epoch, *rest)

        teacher_cache_job.write_epoch = pausing_write
    if args.kill_in_epoch:
        real_save = torch.save

        def dying_save(obj, f, *a, **kw):
            if isinstance(obj, dict) and obj.get("epoch") == args.kill_in_epoch and "logits" in obj:
                f.write(b"half an epoch")
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *a, **kw)

        torch.save = dying_save
    write_teacher_cache(job_cfg((args.root, args.teacher), args.prefix, args.cache))


if __name__ == "__main__":
    child(sys.argv[1:])


def test_bench_replay_cli(data_and_teacher, tmp_path, capsys):
    """tools/bench_replay.py on tiny data: the three modes, the replayed students identical to solo."""
    from helpers.tools import load_tool

    root, _ = data_and_teacher
    argv = ["--root", root, "--methods", "KD", "SLD", "--train-subset", "0", "--test-subset", "0",
            "--configs-dir", os.path.join(REPO, "configs"), "--out", str(tmp_path), "--threads", "1",
            "DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "8",
            "DISTILLER.TEACHER", "resnet8", "DISTILLER.STUDENT", "resnet8"]
    assert load_tool("bench_replay").main(argv) == 0
    out = capsys.readouterr().out
    assert "replay / solo = " in out and "replay / paired = " in out and "machine: " in out
    data = json.load(open(os.path.join(tmp_path, "bench_replay.json")))
    (repeat,) = data["repeats"]
    assert [r["same_as_solo"] for r in repeat["replay"]["runs"]] == [True, True]
    assert repeat["replay"]["streams"] == [1, 2] and data["replay_over_solo"] > 0
    solo_best = [r["solo_best_top1"] for r in repeat["speed"]["runs"]]
    assert [r["replay_best_top1"] for r in repeat["replay"]["runs"]] == solo_best
