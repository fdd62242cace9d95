"""The reproduction report: published numbers beside a fake results folder (complete, partial,
shortened, subset, missing and unmatched cells), and the data file itself."""
import os

import pytest

from mdistiller.benchmark import find_run_folders, read_run
from helpers.run_folders import fake_run
from mdistiller.benchmark.paper import PAPER_RESULTS, load_paper_results, paper_comparison, write_paper_report

TOY_PAPER = {
    "recipes": {"cifar100": {"epochs": 240}},
    "results": [
        {"dataset": "cifar100", "teacher": "resnet32x4", "student": "resnet8x4", "method": "KD", "top1": 73.33,
         "source": "paper A"},
        {"dataset": "cifar100", "teacher": "resnet32x4", "student": "resnet8x4", "method": "MLKD", "top1": 77.08,
         "source": "paper A"},
        {"dataset": "cifar100", "teacher": "resnet32x4", "student": "resnet8x4", "method": "SLD", "top1": 77.69,
         "source": "paper A"},
        {"dataset": "cifar100", "teacher": "resnet56", "student": "resnet20", "method": "KD", "top1": 70.66,
         "source": "paper B"},
    ],
}


@pytest.fixture
def results(tmp_path):
    root = str(tmp_path)
    full = [50.0] * 239
    fake_run(root, "sld0", "SLD", full + [77.5], seed=0)
    fake_run(root, "sld1", "SLD", full + [77.9], seed=1)
    fake_run(root, "sld2", "SLD", full[:100], finished=False, seed=2)  # stopped early: not counted
    fake_run(root, "kdours", "KD_ours", [70.0, 76.0], epochs=2)  # MLKD's other name, shortened
    fake_run(root, "kdsub", "KD", [60.0] * 240, subset=5000)  # full schedule, train subset
    fake_run(root, "dkd_r56", "DKD", [71.0] * 240, teacher="resnet56", student="resnet20")  # no published DKD
    fake_run(root, "demo", "SLD", [90.0, 95.0], epochs=2, teacher="demo_cnn_large", student="demo_cnn_tiny",
             dataset="demo")
    return [read_run(f) for f in find_run_folders(root)]


def table_rows(text):
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Dataset")]
    return {tuple(c.strip() for c in line.strip("|").split("|"))[:3]: [c.strip() for c in line.strip("|").split("|")]
            for line in rows if not line.startswith("| ---")}


def test_report_puts_published_numbers_beside_ours(results):
    text = paper_comparison(results, TOY_PAPER)
    rows = table_rows(text)
    pair = "resnet32x4 → resnet8x4"
    assert rows[("cifar100", pair, "SLD")] == ["cifar100", pair, "SLD", "77.69", "77.70 ± 0.28", "+0.01", "2/3",
                                               "1 of 3 runs incomplete"]
    assert rows[("cifar100", pair, "MLKD")] == ["cifar100", pair, "MLKD", "77.08", "76.00‡", "-1.08", "1/1",
                                                "shortened schedule: 2 of 240 epochs"]
    assert rows[("cifar100", pair, "KD")] == ["cifar100", pair, "KD", "73.33", "60.00‡", "-13.33", "1/1",
                                              "train subset of 5000 images"]
    # resnet56 -> resnet20 was run (DKD), so its published KD shows as a missing cell
    r56 = "resnet56 → resnet20"
    assert rows[("cifar100", r56, "KD")] == ["cifar100", r56, "KD", "70.66", "—", "—", "0", "not run"]
    assert rows[("cifar100", r56, "DKD")][3:7] == ["—", "71.00", "—", "1/1"]
    assert rows[("demo", "demo_cnn_large → demo_cnn_tiny", "SLD")][3:8] == ["—", "95.00", "—", "1/1", ""]
    order = list(rows)
    assert order[:4] == [("cifar100", pair, m) for m in ("KD", "MLKD", "SLD")] + [("cifar100", r56, "KD")]
    assert "Published numbers: paper A; paper B" in text and "No run matches" not in text


def test_planned_runs_without_folders_are_not_run(results, tmp_path):
    planned = read_run(str(tmp_path / "nowhere"), method="KD", pair="resnet32x4 -> resnet8x4", planned_epochs=240)
    rows = table_rows(paper_comparison([planned], TOY_PAPER))
    assert rows[("cifar100", "resnet32x4 → resnet8x4", "KD")][3:] == ["73.33", "—", "—", "0/1", "not run"]
    sld = [r for r in results if r.method == "SLD" and "demo" not in r.folder]
    rows = table_rows(paper_comparison(sld + [read_run(str(tmp_path / "nowhere"), method="SLD",
                                                       pair="resnet32x4 -> resnet8x4")], TOY_PAPER))
    assert rows[("cifar100", "resnet32x4 → resnet8x4", "SLD")][6:] == ["2/4",
                                                                      "1 of 4 runs incomplete; 1 of 4 runs not run"]


def test_report_without_matching_runs_lists_the_published_settings(results):
    text = paper_comparison([r for r in results if r.pair.startswith("demo")], TOY_PAPER)
    assert len(table_rows(text)) == 1
    assert ("No run matches a published setting; those are: cifar100 resnet32x4 → resnet8x4, "
            "cifar100 resnet56 → resnet20.") in text


def test_runs_without_config_match_on_their_pair_label(tmp_path, results):
    sld = next(r for r in results if r.folder.endswith("sld0"))
    os.remove(os.path.join(sld.folder, "config.yaml"))
    moved = read_run(sld.folder, method="SLD", pair="resnet32x4 -> resnet8x4", planned_epochs=240)
    rows = table_rows(paper_comparison([moved], TOY_PAPER))
    assert rows[("cifar100", "resnet32x4 → resnet8x4", "SLD")][3:7] == ["77.69", "77.50", "-0.19", "1/1"]


def test_write_paper_report_writes_paper_md(results, tmp_path):
    text, path = write_paper_report(results, str(tmp_path / "out"), TOY_PAPER)
    assert path == str(tmp_path / "out" / "paper.md") and open(path, encoding="utf-8").read() == text


def test_teacher_rows_are_left_out(results):
    next(r for r in results if r.folder.endswith("sld0")).role = "teacher"
    rows = table_rows(paper_comparison(results, TOY_PAPER))
    assert rows[("cifar100", "resnet32x4 → resnet8x4", "SLD")][6] == "1/2"


def test_the_shipped_numbers_are_those_of_the_sld_docs():
    paper = load_paper_results()
    assert os.path.isfile(PAPER_RESULTS) and paper["recipes"]["cifar100"]["epochs"] == 240
    got = {(e["dataset"], e["teacher"], e["student"], e["method"]): e["top1"] for e in paper["results"]}
    assert got[("cifar100", "resnet32x4", "resnet8x4", "SLD")] == 77.69
    assert got[("cifar100", "resnet32x4", "resnet8x4", "MLKD")] == 77.08
    assert got[("imagenet", "ResNet34", "ResNet18", "SLD")] == 73.83
    assert got[("cifar100", "ResNet50", "MobileNetV2", "DKD")] == 70.35
    assert len(got) == len(paper["results"]) == 73  # no setting twice (25 SLD docs, 42 LS, 6 DIST)
    from mdistiller.models import cifar_model_dict, imagenet_model_dict

    for (dataset, teacher, student, _) in got:
        zoo = cifar_model_dict if dataset == "cifar100" else imagenet_model_dict
        assert teacher in zoo and student in zoo  # the repository's architecture names


def test_benchmark_cli_report_only_paper(tmp_path, capsys):
    import importlib.util

    root = str(tmp_path / "runs")
    fake_run(root, "sld0", "SLD", [50.0] * 239 + [77.5])
    spec = importlib.util.spec_from_file_location("benchmark_cli", os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "tools", "benchmark.py"))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = str(tmp_path / "out")
    assert cli.main(["--report-only", "--paper", "--runs-dir", root, "--out", out, "--no-chart"]) == 0
    text = open(os.path.join(out, "paper.md"), encoding="utf-8").read()
    assert "| cifar100 | resnet32x4 → resnet8x4 | SLD | 77.69 | 77.50 | -0.19 | 1/1 |  |" in text
    assert "| cifar100 | resnet32x4 → resnet8x4 | DKD | 76.32 | — | — | 0 | not run |" in text  # the shipped data
    printed = capsys.readouterr().out
    assert text in printed and f"paper: {os.path.join(out, 'paper.md')}" in printed
    assert os.path.isfile(os.path.join(out, "results.md"))  # the usual report is still written
