"""tools/analyze.py's pipeline: a student checkpoint (and its teacher) -> figures + analysis.md.

What is compared, on the dataset's test split:
  correlation_gap.png     DKD paper's heat map: |class-mean logits of teacher - of student|
  per_class_accuracy.png  top-1 per class, student vs teacher
  reliability.png         reliability diagrams with ECE, teacher and student
  rescued_pairs.png       confusions the teacher makes that the student gets right
  tsne.png                t-SNE of both models' pooled features (needs scikit-learn)
  swap_rates.png          the run's swap statistics per epoch (when the checkpoint sits in a run
                          folder whose worklog has them: SLD and the swapped variants)
  analysis.md             the numbers behind the figures, and links to them

Where the inputs come from when not given:
  config        the run folder's config.yaml beside the checkpoint (dataset, subsets, names)
  architectures DISTILLER.STUDENT / DISTILLER.TEACHER of that config
  teacher       the teacher inside the run's `latest` checkpoint (the exact one distilled from);
                `-t FILE` any teacher/student/run checkpoint; `-t pretrain` the model zoo's
"""
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from ..config import command_line_plugins, file_plugins, load_cfg
from ..runtime.checkpoint_io import extract_state_dict, extract_student_state_dict, load_weights
from ..errors import CheckpointError, ConfigError, OutputError
from ..runtime.safe_write import unwritable_folder, writing_into
from . import comparison, plots
from .inference import collect_outputs
from .markdown import write_summary

TSNE_SAMPLES = 2000  # t-SNE is quadratic in the points; a stratum of the test set shows the structure
TSNE_MISSING = "t-SNE skipped: scikit-learn is not installed; install it with: pip install scikit-learn"
TEACHER_PREFIX = "teacher."


@dataclass
class Analysis:
    """Everything computed, for the figures and analysis.md."""
    student: str
    student_ckpt: str
    teacher: str
    teacher_source: str
    dataset: str
    class_names: List[str]
    targets: np.ndarray
    logits: Dict[str, np.ndarray]  # "teacher", "student"
    features: Dict[str, Optional[np.ndarray]]
    top1: Dict[str, float] = field(default_factory=dict)
    per_class: Dict[str, np.ndarray] = field(default_factory=dict)
    reliability: Dict[str, comparison.Reliability] = field(default_factory=dict)
    gap: Optional[np.ndarray] = None
    rescued: List[comparison.RescuedPair] = field(default_factory=list)
    disagreement: tuple = (0, 0)  # (teacher wrong & student right, teacher right & student wrong)
    swap_last: Dict[str, float] = field(default_factory=dict)  # swap statistics of the run's last epoch
    files: Dict[str, str] = field(default_factory=dict)  # kind -> written path
    notes: List[str] = field(default_factory=list)


# ---------------------------------------------------------------- inputs
def run_folder_of(ckpt):
    """The run folder holding `ckpt` (it has a config.yaml), or None."""
    folder = os.path.dirname(os.path.abspath(ckpt))
    return folder if os.path.isfile(os.path.join(folder, "config.yaml")) else None


def analysis_cfg(ckpt, dataset=None, root=None, opts=(), allow_plugins=False):
    """(cfg, run folder or None): the run's config when the checkpoint sits in a run folder,
    else the defaults; -d/--root and KEY VALUE overrides on top. The run's PLUGINS are imported
    only when the command line names them (`opts`) or `allow_plugins` says so."""
    if not os.path.isfile(ckpt):
        raise CheckpointError(f"checkpoint {ckpt} (-c/--ckpt) does not exist; pass a run's student_best, "
                              "student_latest or latest")
    folder = run_folder_of(ckpt)
    if folder is None and not dataset:
        raise ConfigError(f"-d/--dataset is needed: {os.path.dirname(os.path.abspath(ckpt))} has no config.yaml "
                          "saying which data the checkpoint was trained on")
    extra = (["DATASET.TYPE", dataset] if dataset else []) + (["DATASET.ROOT", root] if root else [])
    path = os.path.join(folder, "config.yaml") if folder else None
    if path and not allow_plugins:
        check_run_plugins(path, opts)
    cfg = load_cfg(path, list(opts) + extra)
    return cfg, folder


def check_run_plugins(path, opts):
    """A run folder is data, possibly someone else's: the plug-ins its config.yaml lists run code
    when imported, so they are imported only when the user's command line names them."""
    needed = [p for p in file_plugins(path) if p not in command_line_plugins(opts)]
    if needed:
        flags = " ".join(f"--plugin {p}" for p in needed)
        raise ConfigError(f"the run in {os.path.dirname(path)} was trained with plug-in module(s) {', '.join(needed)} "
                          f"(PLUGINS in its config.yaml), and importing them runs their code; if you trust them, "
                          f"pass {flags} (or --allow-plugins)")


def architecture(given, cfg, folder, key, flag):
    if given:
        return given
    if folder is None:
        raise ConfigError(f"{flag} is needed: the checkpoint's folder has no config.yaml naming its {key}")
    return getattr(cfg.DISTILLER, key)


def teacher_part(ckpt, path):
    """The `teacher.*` weights of a full distiller checkpoint (a run's latest/best/epoch_N)."""
    sd = extract_state_dict(ckpt, path)
    part = {k[len(TEACHER_PREFIX):]: v for k, v in sd.items() if k.startswith(TEACHER_PREFIX)}
    if not part:
        raise CheckpointError(f"{path} holds no teacher weights (no '{TEACHER_PREFIX}' keys): the run trained "
                              "without a teacher; pass the teacher with -t TEACHER_CKPT --teacher-model NAME")
    return part


def teacher_or_model(ckpt, path):
    """-t FILE: a run checkpoint's teacher part, or the network inside a teacher/student file."""
    sd = extract_state_dict(ckpt, path)
    if any(k.startswith(TEACHER_PREFIX) for k in sd):
        return teacher_part(ckpt, path)
    return extract_student_state_dict(ckpt, path)


def model_settings_of(cfg, role, given, flag):
    """create_model's settings for the student or teacher: the run's (or the command line's)
    DISTILLER.<role>_KWARGS / _FEATURES at the training resolution; messages name `flag` when
    the architecture came from it."""
    from ..distillers.shapes import input_size_for
    from ..models import model_settings

    settings = model_settings(cfg, role, input_size_for(cfg) or (32, 32))
    if given:
        settings["key"] = flag
    return settings


def load_teacher_model(cfg, name, num_classes, teacher_arg, folder, settings):
    """(teacher network, where its weights came from); see the module docstring for the order.
    `settings`: create_model's (model_settings_of)."""
    from ..models import build_teacher, create_model

    def fresh():
        return create_model(name, num_classes, cfg.DATASET.TYPE, **settings)

    if teacher_arg == "pretrain":
        return build_teacher(name, num_classes, cfg.DATASET.TYPE, **settings), f"the model zoo's {name}"
    if teacher_arg:
        if not os.path.isfile(teacher_arg):
            raise CheckpointError(f"teacher checkpoint {teacher_arg} (-t/--teacher) does not exist; pass a teacher "
                                  "file, a run's student_best or latest, or 'pretrain' for the model zoo's")
        return load_weights(fresh(), teacher_arg, extract=teacher_or_model), teacher_arg
    latest = os.path.join(folder, "latest") if folder else ""
    if os.path.isfile(latest):
        return load_weights(fresh(), latest, extract=teacher_part), f"{latest} (the run's teacher)"
    from ..models import load_teacher

    zoo = cfg.clone()
    zoo.defrost()
    zoo.DISTILLER.TEACHER = name
    source = cfg.DISTILLER.TEACHER_WEIGHTS or f"the model zoo's {name}"
    return load_teacher(zoo, num_classes, settings["input_size"]), source


def test_loader(cfg):
    """(test loader, class names) of cfg's dataset, with DATASET.TEST_SUBSET applied."""
    from ..data.datasets import EvalDataset
    from ..data.loaders import TEST, make_loader
    from ..data.sources import build_sources
    from ..data.transforms import test_view

    _, test, classes, spec = build_sources(cfg)
    loader = make_loader(EvalDataset(test, test_view(spec)), cfg.DATASET.TEST.BATCH_SIZE, TEST, cfg.SEED,
                         num_workers=cfg.DATASET.NUM_WORKERS)
    return loader, [str(c) for c in classes]


# ---------------------------------------------------------------- numbers
def compute_metrics(analysis):
    a, n = analysis, len(analysis.class_names)
    for who, logits in a.logits.items():
        a.top1[who] = comparison.accuracy(logits, a.targets)
        a.per_class[who] = comparison.per_class_accuracy(logits, a.targets, n)
        a.reliability[who] = comparison.reliability(logits, a.targets)
    t, s = a.logits["teacher"], a.logits["student"]
    a.gap = comparison.logit_correlation_gap(t, s, a.targets, n)
    a.rescued = comparison.rescued_pairs(t, s, a.targets)
    a.disagreement = comparison.disagreement_counts(t, s, a.targets)
    return a


def tsne_unavailable():
    try:
        import sklearn.manifold  # noqa: F401
    except ImportError:
        return TSNE_MISSING
    return None


def tsne_embeddings(features, targets, samples=TSNE_SAMPLES, seed=0):
    """({label: (n, 2) embedding}, targets of those n samples) over a seeded random subset."""
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(len(targets))[:samples])
    perplexity = float(min(30.0, max(2.0, (len(keep) - 1) / 3.0)))
    embeddings = {label: TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
                  .fit_transform(f[keep].astype(np.float64)) for label, f in features.items()}
    return embeddings, targets[keep]


def swap_series(folder):
    """(rates, ranks, last) from the run's worklog: rates and ranks {name: [(epoch, value)]}, last
    {name: value} of the last epoch logged (a rank is missing in an epoch without swapped rows)."""
    from ..engine.worklog import read_worklog

    log = read_worklog(os.path.join(folder, "worklog.txt"))
    keys = sorted({k for e in log.epochs for k in e if k.startswith("swap.")})
    series = {k[len("swap."):]: log.series(k) for k in keys}
    rates = {k: v for k, v in series.items() if not k.startswith("rank_")}
    ranks = {k[len("rank_"):]: v for k, v in series.items() if k.startswith("rank_")}
    last = {k[len("swap."):]: v for k, v in log.epochs[-1].items() if k.startswith("swap.")} if keys else {}
    return rates, ranks, last


def student_swap_gamma(cfg):
    """The epoch after which SLD's student swap term is on, when the run used it."""
    names = [cfg.DISTILLER.TYPE] + list(cfg.DISTILLER.STACK)
    return cfg.SLD.GAMMA if "SLD" in names and cfg.SLD.STUDENT_SWAP else None


# ---------------------------------------------------------------- outputs
def draw(analysis, out_dir, tsne_samples=TSNE_SAMPLES, max_diff=plots.CORRELATION_VMAX, cfg=None, folder=None):
    """Write every figure into out_dir; returns {kind: path} (also stored in analysis.files)."""
    a = analysis
    names = a.class_names
    figures = {
        "correlation_gap": plots.correlation_gap_figure(a.gap, names, vmax=max_diff),
        "per_class_accuracy": plots.per_class_accuracy_figure(a.per_class["teacher"], a.per_class["student"], names),
        "reliability": plots.reliability_figure(a.reliability),
        "rescued_pairs": plots.rescued_pairs_figure(a.rescued, names),
    }
    if tsne_samples > 0:
        missing = tsne_unavailable()
        features = {k: v for k, v in a.features.items() if v is not None}
        if missing:
            a.notes.append(missing)
        elif len(features) < len(a.features):
            a.notes.append("t-SNE skipped: a model returns no feats['pooled_feat']")
        else:
            embeddings, shown = tsne_embeddings(features, a.targets, tsne_samples)
            figures["tsne"] = plots.tsne_figure(embeddings, shown, names)
    if folder is not None:
        rates, ranks, a.swap_last = swap_series(folder)
        if rates:
            figures["swap_rates"] = plots.swap_rates_figure(rates, ranks, student_swap_gamma(cfg) if cfg else None)
    os.makedirs(out_dir, exist_ok=True)
    for kind, fig in figures.items():
        a.files[kind] = plots.save_figure(fig, os.path.join(out_dir, f"{kind}.png"))
    return a.files


def analyze(ckpt, dataset=None, root=None, model=None, teacher=None, teacher_model=None, out_dir=None,
            tsne_samples=TSNE_SAMPLES, max_diff=plots.CORRELATION_VMAX, opts=(), progress=False, allow_plugins=False):
    """The whole pipeline (see the module docstring); returns the Analysis, files in `.files`.
    `allow_plugins`: import the PLUGINS of the run's config.yaml even when `opts` does not name them."""
    plots.require_matplotlib("tools/analyze.py's figures")  # before any slow step
    out_dir = out_dir or os.path.join(os.path.dirname(os.path.abspath(ckpt)), "analysis")
    check_output_folder(out_dir)
    cfg, folder = analysis_cfg(ckpt, dataset, root, opts, allow_plugins)
    student_name = architecture(model, cfg, folder, "STUDENT", "-m/--model")
    teacher_name = architecture(teacher_model, cfg, folder, "TEACHER", "--teacher-model")
    from ..engine.device import prepare_model, resolve_device
    from ..models import check_model, create_model

    student_settings = model_settings_of(cfg, "STUDENT", model, "-m/--model")
    teacher_settings = model_settings_of(cfg, "TEACHER", teacher_model, "--teacher-model")
    check_model(student_name, cfg.DATASET.TYPE, **student_settings)  # before any data is read
    check_model(teacher_name, cfg.DATASET.TYPE, **teacher_settings)
    device = resolve_device(cfg.DEVICE)
    loader, class_names = test_loader(cfg)
    student = load_weights(create_model(student_name, len(class_names), cfg.DATASET.TYPE, **student_settings), ckpt,
                           extract=extract_student_state_dict)
    teacher_net, source = load_teacher_model(cfg, teacher_name, len(class_names), teacher, folder, teacher_settings)
    models = {"teacher": prepare_model(teacher_net, device), "student": prepare_model(student, device)}
    outputs, targets = collect_outputs(models, loader, device, progress)
    analysis = Analysis(student_name, ckpt, teacher_name, source, cfg.DATASET.TYPE, class_names, targets,
                        {k: v["logits"] for k, v in outputs.items()}, {k: v["features"] for k, v in outputs.items()})
    compute_metrics(analysis)
    with writing_into(out_dir, "-o/--out"):
        draw(analysis, out_dir, tsne_samples, max_diff, cfg, folder)
        analysis.files["summary"] = write_summary(analysis, os.path.join(out_dir, "analysis.md"))
    return analysis


def check_output_folder(out_dir):
    """OutputError before any slow step when the figures cannot be written into out_dir."""
    reason = unwritable_folder(out_dir)
    if reason:
        raise OutputError(f"cannot write the analysis into {out_dir}: {reason}; pass -o/--out a writable folder")
