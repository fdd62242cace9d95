"""Benchmark pieces without training: worklog reading, labels, parameter counts, summaries,
tables, the writers, the chart, spec parsing and run planning, resumability decisions."""
import csv
import json
import math
import os
import sys

import pytest
import torch

from mdistiller.benchmark import parse_worklog, read_run, read_worklog, summarize
from mdistiller.benchmark.collect import RunResult, count_parameters, find_run_folders, labels_from_name, write_run_json
from mdistiller.engine.events import read_scalars
from mdistiller.benchmark.report import accuracy_table, write_report
from mdistiller.benchmark.runner import decide
from mdistiller.benchmark.spec import load_matrix, matrix_from_names, plan_runs, slug
from mdistiller.benchmark.summary import mean_std
from mdistiller.config import dump_cfg, load_cfg
from mdistiller.engine.worklog import append_best, append_epoch
from mdistiller.errors import CheckpointError, ConfigError

RULE = "-" * 25


def block(epoch, test_acc, top5=90.0, lr="0.05"):
    return (f"{RULE}\nepoch: {epoch}\nlr: {lr}\ntrain_acc: 11.53\ntrain_loss: 48.52\n"
            f"test_acc: {test_acc:.2f}\ntest_acc_top5: {top5:.2f}\ntest_loss: 3.63\n{RULE}\n")


def write_worklog(folder, accs, finished=True, top5=None):
    """A worklog written by the trainer's own writer (mdistiller's exact bytes)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "worklog.txt")
    for epoch, acc in enumerate(accs, 1):
        values = {"train_acc": 50.0, "train_loss": 1.0, "test_acc": acc,
                  "test_acc_top5": (top5 or [90.0] * len(accs))[epoch - 1], "test_loss": 0.5}
        append_epoch(path, epoch, 0.05, values)
    if finished:
        append_best(path, max(accs))
    return path


# ---------------------------------------------------------------- worklog
def test_worklog_in_mdistiller_format_is_read_in_full():
    text = block(1, 18.29, 46.91) + block(2, 25.50, 55.0) + "best_acc\t25.50"
    log = parse_worklog(text)
    assert log.finished and log.best_acc == 25.50 and log.last_epoch == 2 and not log.problems
    assert log.epochs[0] == {"epoch": 1.0, "lr": 0.05, "train_acc": 11.53, "train_loss": 48.52,
                             "test_acc": 18.29, "test_acc_top5": 46.91, "test_loss": 3.63}
    assert log.series("test_acc") == [(1, 18.29), (2, 25.5)]


def test_worklog_written_by_the_trainer_parses(tmp_path):
    log = read_worklog(write_worklog(str(tmp_path), [10.0, 30.0, 20.0]))
    assert log.finished and log.best_acc == 30.0 and [e["test_acc"] for e in log.epochs] == [10.0, 30.0, 20.0]


def test_truncated_worklog_keeps_whole_blocks_and_says_what_is_wrong():
    text = block(1, 18.29) + block(2, 25.5)[:60]  # cut inside epoch 2's block
    log = parse_worklog(text)
    assert log.last_epoch == 1 and not log.finished
    assert any("epoch 2" in p and "cut off" in p for p in log.problems)


def test_resumed_after_finishing_only_the_last_best_acc_counts():
    # mdistiller appends the next block right after the unterminated best_acc line
    text = block(1, 10.0) + "best_acc\t10.00" + block(2, 12.0) + block(2, 14.0)
    log = parse_worklog(text)
    assert not log.finished  # the run went on after that best_acc line
    assert log.series("test_acc") == [(1, 10.0), (2, 14.0)]  # the later epoch-2 block wins
    assert parse_worklog(text + "best_acc\t14.00").best_acc == 14.0


def test_crlf_line_ends_and_junk_lines():
    text = (block(1, 50.0) + "garbage without a colon\n" + "best_acc\t50.00").replace("\n", "\r\n")
    log = parse_worklog(text)
    assert log.finished and log.last_epoch == 1
    assert log.problems == ["1 unreadable line(s) skipped"]


def test_missing_worklog_is_a_problem_not_an_exception(tmp_path):
    assert read_worklog(str(tmp_path / "nope.txt")).problems == ["no worklog.txt"]


# ---------------------------------------------------------------- labels and folders
def test_mdistiller_folder_names_give_labels_and_seed():
    assert labels_from_name("kd,res32x4,res8x4") == ("kd", "res32x4 -> res8x4", None)
    # mdistiller glues command-line overrides on without a comma: "TAG" + "KEY:VALUE,KEY:VALUE"
    assert labels_from_name("dkd,res56,res20SOLVER.LR:0.1,SEED:3") == ("dkd", "res56 -> res20", 3)
    assert labels_from_name("my_run") == ("my_run", "", None)


def test_parameter_count_skips_batchnorm_statistics_and_module_prefix():
    bn = torch.nn.BatchNorm2d(4)
    sd = {f"module.teacher.bn.{k}": v for k, v in bn.state_dict().items()}
    sd["module.student.fc.weight"] = torch.zeros(3, 5)
    assert count_parameters(sd, "teacher.") == 8  # weight + bias, not running_mean/var/count
    assert count_parameters(sd) == 8 + 15


def mdistiller_folder(root, name, accs, finished=True, params=True):
    """A run folder as mdistiller leaves it: worklog, student_best, best with DataParallel keys."""
    folder = os.path.join(root, name)
    write_worklog(folder, accs, finished)
    if params:
        student = torch.nn.Linear(4, 2)  # 10 parameters
        teacher = torch.nn.Linear(4, 3)  # 15 parameters
        torch.save({"model": student.state_dict()}, os.path.join(folder, "student_best"))
        distiller = {f"module.student.{k}": v for k, v in student.state_dict().items()}
        distiller.update({f"module.teacher.{k}": v for k, v in teacher.state_dict().items()})
        torch.save({"model": distiller, "epoch": len(accs), "best_acc": max(accs)}, os.path.join(folder, "best"))
    return folder


def test_read_run_on_an_mdistiller_folder(tmp_path):
    folder = mdistiller_folder(str(tmp_path), "kd,res32x4,res8x4", [70.0, 73.5, 73.1])
    r = read_run(folder)
    assert (r.method, r.pair, r.seed, r.status) == ("kd", "res32x4 -> res8x4", None, "complete")
    assert (r.best_top1, r.best_epoch, r.last_top1, r.epochs) == (73.5, 2, 73.1, 3)
    assert (r.student_params, r.teacher_params) == (10, 15)
    assert r.wall_time_s is None and r.images_per_s is None and not r.problems


def test_read_run_reports_unfinished_and_missing_logs(tmp_path):
    unfinished = read_run(mdistiller_folder(str(tmp_path), "kd,a,b", [10.0, 20.0], finished=False))
    assert unfinished.status == "incomplete" and unfinished.best_top1 == 20.0
    assert "no best_acc line: training stopped after epoch 2" in unfinished.problems
    no_log = tmp_path / "dkd,a,b"
    no_log.mkdir()
    torch.save({"model": {}}, str(no_log / "latest"))
    r = read_run(str(no_log))
    assert r.status == "incomplete" and "no worklog.txt" in r.problems and r.best_top1 is None
    missing = read_run(str(tmp_path / "never"), method="KD", pair="a -> b", seed=1)
    assert missing.status == "missing" and missing.problems == ["not run yet (no folder)"]


def test_run_json_labels_and_failed_status_win(tmp_path):
    folder = str(tmp_path / "x")
    write_run_json(folder, {"method": "SLD", "pair": "t -> s", "seed": 4, "role": "student",
                            "status": "failed", "error": "config key X is bad", "wall_time_s": 2.5})
    r = read_run(folder)
    assert (r.method, r.pair, r.seed, r.status, r.wall_time_s) == ("SLD", "t -> s", 4, "failed", 2.5)
    assert "training failed: config key X is bad" in r.problems


def test_find_run_folders_at_each_depth(tmp_path):
    a = mdistiller_folder(str(tmp_path / "proj1"), "kd,a,b", [1.0], params=False)
    b = mdistiller_folder(str(tmp_path / "proj2"), "dkd,a,b", [1.0], params=False)
    (tmp_path / "proj1" / "notes").mkdir()  # not a run folder
    assert find_run_folders(str(tmp_path)) == [a, b]
    assert find_run_folders(str(tmp_path / "proj1")) == [a]
    assert find_run_folders(a) == [a]


def test_events_reader_gets_throughput(tmp_path):
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "train.events"))
    for epoch, value in enumerate([100.0, 300.0], 1):
        writer.add_scalar("throughput", value, epoch)
    writer.close()
    assert read_scalars(str(tmp_path / "train.events"))["throughput"] == [(1, 100.0), (2, 300.0)]
    assert read_scalars(str(tmp_path / "none")) == {}


# ---------------------------------------------------------------- summary and tables
def result(method, pair, seed, best, status="complete", role="student", curve=None):
    return RunResult(folder=f"out/{method},{pair},seed{seed}", method=method, pair=pair, seed=seed, role=role,
                     status=status, best_top1=best, last_top1=best - 1, top5_at_best=99.0,
                     curve=curve or [(1, best - 5), (2, best)])


def test_mean_and_sample_std():
    mean, std = mean_std([70.0, 72.0, 74.0])
    assert mean == 72.0 and std == pytest.approx(2.0)  # sqrt(((-2)^2 + 0 + 2^2) / (3 - 1))
    assert mean_std([5.0]) == (5.0, None)


def sample_results():
    return [result("Teacher", "T -> S", 0, 90.0, role="teacher"),
            result("Vanilla", "T -> S", 0, 70.0), result("Vanilla", "T -> S", 1, 72.0),
            result("KD", "T -> S", 0, 74.0), result("KD", "T -> S", 1, 75.0),
            result("KD", "T -> S", 2, 10.0, status="incomplete"),
            result("KD", "T2 -> S", 0, 60.0), result("Vanilla", "T2 -> S", 0, 61.0)]


def test_summary_counts_only_complete_runs_and_flags_partial_cells():
    s = summarize(sample_results())
    kd = s.cell("KD", "T -> S")
    assert (kd.runs, kd.complete, kd.top1, kd.seeds, kd.partial) == (3, 2, 74.5, [0, 1], True)
    assert kd.top1_std == pytest.approx(math.sqrt(0.5))
    assert kd.curve == [(1, 69.5), (2, 74.5)]
    assert s.methods == ["Teacher", "Vanilla", "KD"] and s.pairs == ["T -> S", "T2 -> S"]
    assert s.reference_methods == ["Teacher"]
    assert s.best_in_column("T -> S") == {"KD"} and s.best_in_column("T2 -> S") == {"Vanilla"}


def test_accuracy_table_layout():
    table = accuracy_table(summarize(sample_results()))
    assert table.splitlines() == [
        "| Method | T -> S | T2 -> S |",
        "| :-- | :-: | :-: |",
        "| *Teacher* | 90.00 |  |",
        "| Vanilla | 71.00 ± 1.41 | **61.00** |",
        "| KD | **74.50 ± 0.71**† | 60.00 |",
    ]


def test_write_report_files(tmp_path):
    results = sample_results()
    summary, paths = write_report(results, str(tmp_path), methods=["Teacher", "Vanilla", "KD"])
    md = open(paths["md"]).read()
    assert "| KD | **74.50 ± 0.71**† | 60.00 |" in md and "## Per cell" in md and "## Problems" not in md
    rows = list(csv.DictReader(open(paths["csv"])))
    assert len(rows) == len(results) and rows[3]["method"] == "KD" and rows[3]["best_top1"] == "74.0"
    assert rows[5]["status"] == "incomplete"
    data = json.load(open(paths["json"]))
    kd = next(c for c in data["cells"] if c["method"] == "KD" and c["pair"] == "T -> S")
    assert kd["top1"] == 74.5 and kd["complete"] == 2 and kd["partial"] is True
    assert data["reference_methods"] == ["Teacher"] and len(data["runs"]) == len(results)
    assert open(paths["chart"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_chart_is_skipped_with_a_message_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    _, paths = write_report(sample_results(), str(tmp_path))
    assert "chart" not in paths and "pip install matplotlib" in paths["chart_skipped"]
    assert not (tmp_path / "results.png").exists() and (tmp_path / "results.md").exists()


# ---------------------------------------------------------------- specs and planning
def tiny_config(path, distiller="KD", teacher="demo_cnn_large", student="demo_cnn_tiny", trainer="base"):
    path.write_text(f"DATASET:\n  TYPE: demo\nDISTILLER:\n  TYPE: {distiller}\n  TEACHER: {teacher}\n"
                    f"  STUDENT: {student}\nSOLVER:\n  EPOCHS: 1\n  TRAINER: {trainer}\n")
    return str(path)


def test_spec_plans_teacher_first_then_seed_by_seed(tmp_path):
    teacher = tiny_config(tmp_path / "teacher.yaml", "NONE", student="demo_cnn_large")
    vanilla = tiny_config(tmp_path / "vanilla.yaml", "NONE")
    kd = tiny_config(tmp_path / "kd.yaml")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"project: p\nseeds: [0, 1]\nopts: [LOG.PREFIX, {tmp_path}]\nmethods:\n"
                    f"  Teacher: {{cfg: {teacher}, role: teacher}}\n  Vanilla: {vanilla}\n"
                    f"  KD: {{cfg: {kd}, opts: [KD.TEMPERATURE, 2.0]}}\n")
    matrix = load_matrix(str(spec))
    # the teacher's config names the teacher as student; it joins the column of its architecture
    assert matrix.pairs == ["demo_cnn_large -> demo_cnn_tiny"]
    runs = plan_runs(matrix)
    assert [(r.method, r.seed) for r in runs] == [("Teacher", 0), ("Vanilla", 0), ("KD", 0), ("Vanilla", 1),
                                                 ("KD", 1)]
    teacher_run, kd_run = runs[0], runs[2]
    assert teacher_run.cfg().DISTILLER.STUDENT == "demo_cnn_large"
    cfg = kd_run.cfg()
    assert cfg.DISTILLER.TEACHER_WEIGHTS == os.path.join(teacher_run.folder, "student_best")
    assert cfg.KD.TEMPERATURE == 2.0 and cfg.SEED == 0 and cfg.EXPERIMENT.PROJECT == "p"
    assert kd_run.folder == os.path.join(str(tmp_path), "p", "KD,demo_cnn_large-demo_cnn_tiny,seed0")
    assert runs[1].cfg().DISTILLER.TEACHER_WEIGHTS == ""  # vanilla needs no teacher


def test_spec_pairs_give_columns(tmp_path):
    kd = tiny_config(tmp_path / "kd.yaml")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"methods: {{KD: {kd}}}\npairs:\n  small: [DISTILLER.STUDENT, demo_cnn_small]\n"
                    "  tiny: [DISTILLER.STUDENT, demo_cnn_tiny]\n")
    runs = plan_runs(load_matrix(str(spec)))
    assert [(r.pair, r.cfg().DISTILLER.STUDENT) for r in runs] == [("small", "demo_cnn_small"),
                                                                   ("tiny", "demo_cnn_tiny")]
    assert runs[0].cfg().EXPERIMENT.PROJECT == "spec"  # default project: the spec's file name


@pytest.mark.parametrize("text, message", [
    ("methods: {KD: missing.yaml}", "config file missing.yaml not found"),
    ("method: {}", "unknown key 'method'"),
    ("methods: {KD: {cfg: CFG, role: boss}}", "role is 'boss'; choose student or teacher"),
    ("methods: {KD: {cfg: CFG, opts: [SOLVER.LR]}}", "must be a list of KEY VALUE pairs"),
    ("seeds: [a]\nmethods: {KD: CFG}", "must be a list of whole numbers"),
    ("methods: {T: {cfg: CFG, role: teacher}}", "has role teacher but its config uses DISTILLER.TYPE KD"),
])
def test_spec_errors_are_one_line_config_errors(tmp_path, text, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text(text.replace("CFG", tiny_config(tmp_path / "kd.yaml")))
    with pytest.raises(ConfigError) as err:
        plan_runs(load_matrix(str(spec)))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_runs_sharing_a_folder_are_refused(tmp_path):
    kd = tiny_config(tmp_path / "kd.yaml")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"methods:\n  'K D': {kd}\n  'K/D': {kd}\n")  # both slug to "K-D"
    assert slug("K D") == slug("K/D") == "K-D"
    with pytest.raises(ConfigError, match="would share the folder"):
        plan_runs(load_matrix(str(spec)))


def test_methods_and_pairs_from_the_config_tree_with_a_stack(tmp_path):
    tree = tmp_path / "configs" / "cifar100"
    for method in ("sld", "reviewkd", "kd"):
        (tree / method).mkdir(parents=True)
    tiny_config(tree / "sld" / "a_b.yaml", "SLD", trainer="ours")
    tiny_config(tree / "kd" / "a_b.yaml")
    (tree / "reviewkd" / "a_b.yaml").write_text("DISTILLER:\n  TYPE: REVIEWKD\nREVIEWKD:\n  REVIEWKD_WEIGHT: 5.0\n")
    matrix = matrix_from_names(["SLD+REVIEWKD", "NONE"], ["a_b"], [0], "p", configs_dir=str(tmp_path / "configs"))
    sld, none = matrix.cells
    assert sld.config.endswith("sld/a_b.yaml")
    assert list(sld.opts) == ["DISTILLER.STACK", ["REVIEWKD"], "REVIEWKD.REVIEWKD_WEIGHT", 5.0]
    # no vanilla/<pair>.yaml: the pair's KD recipe without a teacher
    assert none.config.endswith("kd/a_b.yaml") and list(none.opts) == ["DISTILLER.TYPE", "NONE"]
    with pytest.raises(ConfigError, match=r"no config for method DKD and pair a_b: .*dkd/a_b.yaml does not exist "
                                          r"\(method folders there: kd, reviewkd, sld\)"):
        matrix_from_names(["DKD"], ["a_b"], [0], "p", configs_dir=str(tmp_path / "configs"))


# ---------------------------------------------------------------- resumability decisions
def test_decide_skip_resume_start(tmp_path):
    kd = tiny_config(tmp_path / "kd.yaml")
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"opts: [LOG.PREFIX, {tmp_path}]\nmethods: {{KD: {kd}}}\n")
    run = plan_runs(load_matrix(str(spec)))[0]
    cfg = run.cfg()
    assert decide(run, cfg) == ("start", "new")
    folder = run.folder
    os.makedirs(folder)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        f.write(dump_cfg(cfg))
    assert decide(run, cfg) == ("start", "no committed epoch: starting over")
    # a changed config with no checkpoint written (e.g. diverged in epoch 1): nothing to protect
    assert decide(run, load_cfg(run.config, run.opts + ["SOLVER.LR", 0.2]))[1] == \
        "its config changed (SOLVER.LR 0.05 -> 0.2) and no checkpoint was written: starting over"
    write_worklog(folder, [50.0], finished=False)  # results without a `latest`: as train, refused
    with pytest.raises(CheckpointError, match=r"holds results \(worklog.txt\) but no `latest`.*--overwrite"):
        decide(run, cfg)
    assert decide(run, cfg, overwrite=True)[0] == "start"
    torch.save({}, os.path.join(folder, "latest"))
    assert decide(run, cfg) == ("resume", "resuming after epoch 1")
    append_best(os.path.join(folder, "worklog.txt"), 50.0)
    torch.save({}, os.path.join(folder, "student_best"))
    assert decide(run, cfg) == ("skip", "complete")
    # logging knobs do not matter; anything that changes the result does
    assert decide(run, load_cfg(run.config, run.opts + ["LOG.QUIET", True]))[0] == "skip"
    # training longer (step schedule) resumes; anything that changes the result is refused
    assert decide(run, load_cfg(run.config, run.opts + ["SOLVER.EPOCHS", 2]))[0] == "resume"
    changed = load_cfg(run.config, run.opts + ["SOLVER.LR", 0.2])
    with pytest.raises(CheckpointError, match=r"was trained with another config \(SOLVER.LR 0.05 -> 0.2\); "
                                              r"pass --overwrite to move its outputs into .*replaced/"):
        decide(run, changed)
    assert decide(run, changed, overwrite=True)[0] == "start"
