"""Each benchmark cell's difference to a baseline row with its 95% confidence interval
(mdistiller/benchmark/differences.py): in results.md, differences.csv, results.json, the printed
table and the --paper report; paired by seed where the seeds match, Welch otherwise."""
import csv
import json
import math

import pytest

from helpers.run_folders import fake_run
from helpers.tools import load_tool
from mdistiller.benchmark import find_run_folders, read_run, write_report
from mdistiller.benchmark.stats import t_quantile

PAIR = "resnet32x4 -> resnet8x4"
# test top-1 per epoch (2 epochs): best = max, last = the second epoch
RUNS = [("0van", "NONE", 0, [65.0, 65.0]),  # one seed: a difference, no interval
        ("1kd0", "KD", 0, [70.0, 69.0]), ("1kd1", "KD", 1, [72.0, 71.0]), ("1kd2", "KD", 2, [74.0, 73.0]),
        # the same seeds as KD, a gain of 1 / 1 / 1.5 in best, 2 / 1 / -3 in last
        ("2sld0", "SLD", 0, [71.0, 71.0]), ("2sld1", "SLD", 1, [73.0, 72.0]), ("2sld2", "SLD", 2, [75.5, 70.0]),
        # SLD's best numbers on other seeds: Welch
        ("3dkd3", "DKD", 3, [71.0, 71.0]), ("3dkd4", "DKD", 4, [73.0, 73.0]), ("3dkd5", "DKD", 5, [75.5, 75.5])]
PAIRED_BEST = f"+1.17 [{7 / 6 - 4.302653 / 6:+.2f}, {7 / 6 + 4.302653 / 6:+.2f}]*"  # +1.17 [+0.45, +1.88]*
_WELCH_DF = (109 / 36) ** 2 / ((61 / 36) ** 2 / 2 + (4 / 3) ** 2 / 2)
_WELCH_HALF = t_quantile(0.975, _WELCH_DF) * math.sqrt(109 / 36)
WELCH_BEST = f"+1.17 [{7 / 6 - _WELCH_HALF:+.2f}, {7 / 6 + _WELCH_HALF:+.2f}]"  # no mark: includes zero
PAIRED_LAST = f"+0.00 [{-4.302653 * math.sqrt(7 / 3):+.2f}, {4.302653 * math.sqrt(7 / 3):+.2f}]"


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    for name, method, seed, accs in RUNS:
        fake_run(str(root), name, method, accs, epochs=2, seed=seed)
    return root


def md_rows(text, header_start):
    """{method: [cells]} of the Markdown table whose header starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| " + header_start))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_results_md_csv_and_json_carry_the_difference_to_the_first_distiller_row(runs_dir, tmp_path):
    results = [read_run(f) for f in find_run_folders(str(runs_dir))]
    _, paths = write_report(results, str(tmp_path / "out"), chart=False)
    md = open(paths["md"], encoding="utf-8").read()
    best = md_rows(md, "Best top-1 − KD")
    assert best == {"Vanilla": ["-7.00"], "SLD": [PAIRED_BEST], "DKD": [WELCH_BEST]}
    assert md_rows(md, "Last top-1 − KD")["SLD"] == [PAIRED_LAST]
    assert "## Difference to KD" in md and "selected on the test set" in md and "Welch" in md
    rows = {(r["method"], r["metric"]): r for r in csv.DictReader(open(paths["differences"], encoding="utf-8"))}
    assert rows[("SLD", "best")]["test"] == "paired" and rows[("SLD", "best")]["significant"] == "True"
    assert float(rows[("SLD", "best")]["ci_low"]) == pytest.approx(7 / 6 - 4.302653 / 6, abs=1e-5)
    assert rows[("DKD", "best")]["test"] == "welch" and rows[("DKD", "best")]["significant"] == "False"
    assert float(rows[("DKD", "best")]["df"]) == pytest.approx(_WELCH_DF, abs=1e-4)
    assert rows[("Vanilla", "best")]["ci_low"] == "" and float(rows[("Vanilla", "best")]["difference"]) == -7.0
    data = json.load(open(paths["json"], encoding="utf-8"))
    assert data["baseline"] == "KD" and data["level"] == 0.95
    sld = next(d for d in data["differences"] if (d["method"], d["metric"]) == ("SLD", "last"))
    assert sld["interval"]["test"] == "paired" and sld["interval"]["significant"] is False


def test_the_cli_prints_the_intervals_takes_baseline_and_puts_them_in_the_paper_report(runs_dir, capsys):
    bench = load_tool("benchmark")
    assert bench.main(["--runs-dir", str(runs_dir), "--no-chart", "--paper", "--baseline", "Vanilla"]) == 0
    out = capsys.readouterr().out
    assert "Best top-1 − Vanilla" in out and "+7.00" in out  # KD - Vanilla: one Vanilla seed, no interval
    paper = open(runs_dir / "paper.md", encoding="utf-8").read()
    assert "Ours − Vanilla [95% CI]" in paper
    assert bench.main(["--runs-dir", str(runs_dir), "--no-chart", "--paper"]) == 0
    out = capsys.readouterr().out
    assert PAIRED_BEST in out and WELCH_BEST in out
    paper = open(runs_dir / "paper.md", encoding="utf-8").read().splitlines()
    sld = next([c.strip() for c in line.strip("|").split("|")] for line in paper if "| SLD |" in line)
    assert sld[-2:] == [f"{77.69 - 73.33:+.2f}", PAIRED_BEST]  # published gain over KD, then ours


def test_an_unknown_baseline_is_one_line_naming_the_rows(runs_dir, capsys):
    assert load_tool("benchmark").main(["--runs-dir", str(runs_dir), "--no-chart", "--baseline", "CRD"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--baseline CRD is not a row" in err and "KD" in err
