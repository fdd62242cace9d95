"""LS and DIST in the benchmark: `--methods KD_LS SLD_LS DIST` find their configs, a config with
EXPERIMENT.LOGIT_STAND is labelled "<METHOD>_LS", and --paper shows the published LS/DIST cells."""
import os
import subprocess
import sys

from mdistiller.benchmark import find_run_folders, read_run
from mdistiller.benchmark.paper import load_paper_results, paper_comparison
from mdistiller.benchmark.spec import cfg_labels
from mdistiller.config import dump_cfg, load_cfg
from mdistiller.engine.worklog import append_best, format_epoch_block
from helpers.tiny import REPO, subprocess_env


def test_dry_run_lists_the_ls_and_dist_runs(tmp_path):
    done = subprocess.run([sys.executable, "tools/benchmark.py", "--methods", "KD", "KD_LS", "SLD", "SLD_LS", "DIST",
                           "--pairs", "res32x4_res8x4", "--dry-run", "LOG.PREFIX", str(tmp_path)],
                          cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for i, method in enumerate(["KD", "KD_LS", "SLD", "SLD_LS", "DIST"], 1):
        assert f"[{i}/5] {method} | res32x4_res8x4 | seed 0: new" in done.stdout
    assert "5 to start, 0 to resume, 0 complete" in done.stdout


def test_config_labels_carry_ls():
    ls = load_cfg(os.path.join(REPO, "configs", "cifar100", "mlkd_ls", "res32x4_res8x4.yaml"))
    assert cfg_labels(ls) == ("MLKD_LS", "resnet32x4 -> resnet8x4")
    assert cfg_labels(load_cfg(None, ["DISTILLER.TYPE", "DIST"]))[0] == "DIST"
    stacked = load_cfg(None, ["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", "[DIST]", "EXPERIMENT.LOGIT_STAND", "True"])
    assert cfg_labels(stacked)[0] == "SLD+DIST_LS"


def fake_run(root, name, accs, *opts):
    folder = os.path.join(root, name)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(dump_cfg(load_cfg(None, ["DISTILLER.TEACHER", "resnet32x4", "DISTILLER.STUDENT", "resnet8x4", *opts])))
    with open(os.path.join(folder, "worklog.txt"), "w") as f:
        f.write("".join(format_epoch_block(e, 0.05, {"test_acc": a, "test_acc_top5": 99.0})
                        for e, a in enumerate(accs, 1)))
    append_best(os.path.join(folder, "worklog.txt"), max(accs))


def test_paper_report_shows_the_published_ls_and_dist_cells(tmp_path):
    full = [50.0] * 239
    fake_run(tmp_path, "kd_ls", full + [76.0], "DISTILLER.TYPE", "KD", "EXPERIMENT.LOGIT_STAND", "True")
    fake_run(tmp_path, "dist", full + [76.5], "DISTILLER.TYPE", "DIST")
    text = paper_comparison([read_run(f) for f in find_run_folders(str(tmp_path))])
    rows = {tuple(c.strip() for c in line.strip("|").split("|"))[2:6] for line in text.splitlines()
            if line.startswith("| cifar100")}
    assert ("KD_LS", "76.62", "76.00", "-0.62") in rows
    assert ("DIST", "76.31", "76.50", "+0.19") in rows
    assert ("DKD_LS", "77.01", "—", "—") in rows and ("MLKD_LS", "78.28", "—", "—") in rows
    assert "LS repository README" in text and "DIST repository README" in text


def test_published_numbers_are_in_the_package_data():
    cells = {(e["teacher"], e["student"], e["method"]): e["top1"] for e in load_paper_results()["results"]}
    assert cells[("resnet32x4", "resnet8x4", "MLKD_LS")] == 78.28
    assert cells[("resnet32x4", "resnet8x4", "KD_LS")] == 76.62
    assert cells[("resnet32x4", "resnet8x4", "DKD_LS")] == 77.01
    assert cells[("ResNet50", "MobileNetV2", "KD_LS")] == 69.02
    assert cells[("resnet32x4", "ShuffleV2", "DIST")] == 77.35
    assert sum(method.endswith("_LS") for _, _, method in cells) == 42
    assert sum(method == "DIST" for _, _, method in cells) == 6
