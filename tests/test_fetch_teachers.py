"""mdistiller-fetch-teachers (mdistiller/cli/fetch_teachers.py, models/teacher_archive.py,
runtime/download.py): downloads from a real HTTP server on 127.0.0.1, resumes a cut transfer with
a Range request, refuses hostile archives without extracting anything, and leaves teachers that
tools/train.py then loads."""
import os
import subprocess
import sys

import pytest
import torch

from helpers.http_files import FileServer
from helpers.teacher_archives import code_bytes, member_path, tar_bytes, teacher_bytes
from helpers.tiny import REPO, subprocess_env
from helpers.tools import load_tool
from mdistiller.config import load_cfg
from mdistiller.models import load_teacher
from mdistiller.models.cifar import cifar_model_dict

fetch = load_tool("fetch_teachers")


@pytest.fixture(scope="module")
def good_archive():
    """A cifar_teachers.tar with a resnet56 teacher (3.4 MB); (archive bytes, checkpoint bytes)."""
    ckpt = teacher_bytes("resnet56")
    return tar_bytes([(member_path("resnet56"), ckpt)]), ckpt


def installed_files(dest):
    return sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)


def run_tool(cwd, *args):
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", "fetch_teachers.py"), *args], cwd=cwd,
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)


def test_a_complete_download_installs_the_teacher_and_names_the_command(tmp_path, good_archive, monkeypatch):
    archive, ckpt = good_archive
    with FileServer({"/cifar_teachers.tar": archive}) as server:
        done = run_tool(tmp_path, "--url", server.url("/cifar_teachers.tar"))
    assert done.returncode == 0, done.stderr
    target = tmp_path / "download_ckpts" / member_path("resnet56")
    assert target.read_bytes() == ckpt
    assert installed_files(tmp_path / "download_ckpts") == [member_path("resnet56")]  # no archive, no staging left
    assert f"installed resnet56 teacher: download_ckpts/{member_path('resnet56')}" in done.stdout
    assert "now works, from" in done.stdout and "configs/cifar100/sld/res56_res20.yaml" in done.stdout
    monkeypatch.chdir(tmp_path)  # the named config now finds its teacher where training looks for it
    teacher = load_teacher(load_cfg(os.path.join(REPO, "configs/cifar100/sld/res56_res20.yaml")))
    assert torch.equal(teacher.state_dict()["fc.weight"], torch.load(target, weights_only=True)["model"]["fc.weight"])


def test_a_cut_download_fails_in_one_line_and_the_next_call_resumes_with_a_range(tmp_path, good_archive, capsys,
                                                                                  monkeypatch):
    archive, ckpt = good_archive
    monkeypatch.chdir(tmp_path)
    with FileServer({"/t/cifar_teachers.tar": archive}) as server:
        server.cut_next = 1_000_000
        url = server.url("/t/cifar_teachers.tar")
        assert fetch.main(["--url", url, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and url in err and "stopped at 1000000 of" in err and "rerun to resume" in err
        assert os.path.getsize("download_ckpts/cifar_teachers.tar.part") == 1_000_000
        assert not os.path.exists("download_ckpts/cifar_teachers")
        assert fetch.main(["--url", url, "--quiet"]) == 0
    assert server.ranges == [None, "bytes=1000000-"]  # the second request asked for the rest only
    assert (tmp_path / "download_ckpts" / member_path("resnet56")).read_bytes() == ckpt
    assert installed_files(tmp_path / "download_ckpts") == [member_path("resnet56")]


@pytest.mark.parametrize("case", ["server ignores Range", "part already complete"])
def test_a_resume_that_gets_the_whole_file_or_nothing_more_still_installs(tmp_path, good_archive, monkeypatch,
                                                                          case):
    archive, ckpt = good_archive
    monkeypatch.chdir(tmp_path)
    os.makedirs("download_ckpts")
    kept = archive if case == "part already complete" else archive[:1000]
    open("download_ckpts/cifar_teachers.tar.part", "wb").write(kept)
    with FileServer({"/cifar_teachers.tar": archive}, honour_ranges=case != "server ignores Range") as server:
        assert fetch.main(["--url", server.url("/cifar_teachers.tar"), "--quiet"]) == 0
    assert server.ranges == [f"bytes={len(kept)}-"]
    assert (tmp_path / "download_ckpts" / member_path("resnet56")).read_bytes() == ckpt


def test_a_server_that_is_not_there_is_one_line_with_the_url_to_fetch_by_hand(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with FileServer({}) as server:
        url = server.url("/missing/cifar_teachers.tar")
        assert fetch.main(["--url", url, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"could not download {url} (Not Found)" in err and "--file PATH" in err


HOSTILE = {  # case -> (files, symlinks), put beside a good resnet56 teacher
    "path traversal": lambda marker: ([("cifar_teachers/../../escaped.pth", b"x")], []),
    "absolute path": lambda marker: ([(str(marker.parent / "absolute.pth"), b"x")], []),
    "symlink": lambda marker: ([], [(member_path("resnet110"), "/etc/passwd")]),
    "pickled code": lambda marker: ([(member_path("vgg13"), code_bytes(marker))], []),
    "weights of another model": lambda marker: ([(member_path("wrn_40_2"), teacher_bytes("resnet20"))], []),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_archive_extracts_nothing(tmp_path, case, good_archive, capsys, monkeypatch):
    """Each hostile member comes after a good teacher: the whole archive is refused."""
    marker = tmp_path / "outside" / "code_ran"
    marker.parent.mkdir()
    files, links = HOSTILE[case](marker)
    archive = tmp_path / "hostile.tar"
    archive.write_bytes(tar_bytes([(member_path("resnet56"), good_archive[1])] + files, links))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert fetch.main(["--file", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing was installed" in err
    assert installed_files(tmp_path / "work") == []  # not even the good teacher, no staging folder
    assert os.listdir(tmp_path / "outside") == [] and not (tmp_path / "escaped.pth").exists()


@pytest.mark.parametrize("cut", ["half", "in the first header"])
def test_a_truncated_archive_is_one_line_and_installs_nothing(tmp_path, good_archive, capsys, monkeypatch, cut):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "cifar_teachers.tar"
    archive.write_bytes(good_archive[0][:len(good_archive[0]) // 2 if cut == "half" else 300])
    assert fetch.main(["--file", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a readable tar archive" in err
    assert not (tmp_path / "download_ckpts").exists()


def test_a_destination_that_cannot_be_written_is_one_line(tmp_path, good_archive, capsys):
    archive = tmp_path / "cifar_teachers.tar"
    archive.write_bytes(good_archive[0])
    (tmp_path / "a_file").write_text("in the way")
    assert fetch.main(["--file", str(archive), "--dest", str(tmp_path / "a_file" / "ckpts")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot install teachers into" in err and "--dest" in err


def test_file_installs_from_a_local_archive_and_keeps_existing_teachers_without_overwrite(tmp_path, good_archive,
                                                                                         capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "cifar_teachers.tar"
    archive.write_bytes(good_archive[0])
    target = tmp_path / "download_ckpts" / member_path("resnet56")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"my own teacher")
    assert fetch.main(["--file", str(archive)]) == 0
    assert "kept existing resnet56 teacher" in capsys.readouterr().out and target.read_bytes() == b"my own teacher"
    assert fetch.main(["--file", str(archive), "--overwrite"]) == 0
    assert "installed resnet56 teacher" in capsys.readouterr().out and target.read_bytes() == good_archive[1]
    assert archive.is_file()  # the user's own archive is left alone
    model = cifar_model_dict["resnet56"][0](num_classes=100)
    model.load_state_dict(torch.load(target, weights_only=True)["model"])


@pytest.mark.slow
def test_after_fetching_the_headline_sld_config_starts(tmp_path, cifar_root):
    """Done-when: a fresh folder, fetch-teachers from the local server, then tools/train.py --cfg
    configs/cifar100/sld/res32x4_res8x4.yaml trains (one short epoch on a real CIFAR-100 subset)."""
    archive = tar_bytes([(member_path("resnet32x4"), teacher_bytes("resnet32x4"))])
    with FileServer({"/cifar_teachers.tar": archive}) as server:
        done = run_tool(tmp_path, "--url", server.url("/cifar_teachers.tar"), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "python tools/train.py --cfg configs/cifar100/sld/res32x4_res8x4.yaml" in done.stdout
    train = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "train.py"), "--cfg",
         os.path.join(REPO, "configs/cifar100/sld/res32x4_res8x4.yaml"), "--quiet", "DEVICE", "cpu",
         "DATASET.ROOT", str(cifar_root), "DATASET.CACHE_DIR", str(tmp_path / "cache"), "DATASET.NUM_WORKERS", "0",
         "DATASET.TRAIN_SUBSET", "200", "DATASET.TEST_SUBSET", "100", "SOLVER.EPOCHS", "1", "SOLVER.BATCH_SIZE", "50"],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert train.returncode == 0, train.stderr[-2000:]
    assert list((tmp_path / "output").rglob("student_best"))
