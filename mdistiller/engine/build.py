"""From a config to a finished run: `train(cfg, resume, overwrite)` is what tools/train.py runs.

Order matters and is chosen to fail early: every input (output folder, configs, data layout,
weights files; engine/preflight.py) is checked before any data is read; the distiller class decides the data pipeline (views,
sample indices) before the loaders are built; the loaders give the number of classes the
models need. `train_paired(cfgs, ...)` trains several configs' students on one data stream with
one teacher pass per batch (engine/paired.py), each built exactly as its solo run would be.
"""
import contextlib

from ..distillers import build_distiller, check_distiller_cfg, teacher_required
from ..distillers.inputs import input_views, needs_index, teacher_train_key
from ..distillers.stack import extra_parameters_line
from ..errors import CheckpointError, ConfigError, DataError
from ..runtime.checkpoint_io import extract_student_state_dict, load_weights
from .device import configure_backends, describe_speed_settings, resolve_device, slow_amp_warning
from .distributed import barrier, destroy_process_group, env_dist_info, init_process_group
from .paired import SharedTeacherStep, check_group, same_weights
from .progress import say
from .preflight import check_inputs, start_problem, student_weights
from .run_folder import SCRIPT_WAYS, RunFiles, check_start, run_folder
from .run_lock import claimed, describe, holding
from .seeding import capture_rng_state, restore_rng_state, seed_everything
from .teacher_cache import replay_for
from .trainer import StudentRun, Trainer, stopped_reason


def describe_threads():
    """'threads N': torch's CPU threads. Results depend on it: float sums split over another
    number of threads add in another order (so `--jobs 2`, which gives each run half the cores,
    can differ in the last digits from a run alone)."""
    import torch

    return f"threads {torch.get_num_threads()}"


def describe_inputs(cfg):
    """'views 2 | indices False | update sgd': what the run's batches carry and how it updates."""
    return f"views {input_views(cfg)} | indices {needs_index(cfg)} | update {cfg.SOLVER.UPDATE}"


def build_models(cfg, num_classes):
    """(student, teacher or None) for the configured names and dataset; the student starts from
    DISTILLER.STUDENT_WEIGHTS when set."""
    from ..distillers.shapes import input_size_for
    from ..models import create_model, load_teacher, model_settings  # heavy import, only when training

    size = input_size_for(cfg) or (32, 32)
    student = create_model(cfg.DISTILLER.STUDENT, num_classes, cfg.DATASET.TYPE,
                           **model_settings(cfg, "STUDENT", size))
    init = student_weights(cfg)
    if init:
        load_weights(student, init, extract=extract_student_state_dict)
    teacher = load_teacher(cfg, num_classes, size) if teacher_required(cfg) else None
    return student, teacher


def check_has_batches(cfg, train_loader, num_data, world_size=1):
    """A training set too small for one batch is refused before anything trains (a run of zero
    steps would report its NaN mean loss as a divergence)."""
    if len(train_loader) == 0:
        subset = f" (DATASET.TRAIN_SUBSET {cfg.DATASET.TRAIN_SUBSET})" if cfg.DATASET.TRAIN_SUBSET else ""
        raise DataError(f"the training set has {num_data} sample(s){subset}, too few for one batch: a batch of one "
                        f"sample per process is dropped (BatchNorm needs two); use at least {2 * world_size} "
                        "training samples")


def build_run(cfg, info, device):
    """(StudentRun, train loader, test loader) for one process."""
    from ..data import build_loaders

    views, with_index = input_views(cfg), needs_index(cfg)
    train_loader, test_loader, num_data, num_classes = build_loaders(
        cfg, views, with_index=with_index, rank=info.rank, world_size=info.world_size, device=device)
    check_has_batches(cfg, train_loader, num_data, info.world_size)
    student, teacher = build_models(cfg, num_classes)
    distiller = build_distiller(cfg, student, teacher, num_data)
    if cfg.DISTILLER.TYPE != "NONE":
        say(extra_parameters_line(cfg, distiller), info.is_main)
    run = StudentRun(cfg, distiller, run_folder(cfg), device, info)
    return run, train_loader, test_loader


def train(cfg, resume=False, overwrite=False, step_hooks=()):
    """Train as configured (one process, or one of torchrun's); returns the best test top-1.
    Rank 0 holds the run folder's lock throughout (engine/run_lock.py): RunHeld when another
    process trains it."""
    info = env_dist_info()
    # Every input at once, before any data is read and before the lock writes anything beside the
    # run folder (the trainer checks the run folder again, in step with every rank; StudentRun the
    # CUDA graph).
    check_inputs([cfg], lambda c: start_problem(c, resume, overwrite, lock=info.is_main), info)
    with holding([run_folder(cfg)]) if info.is_main else contextlib.nullcontext():
        return _train(cfg, info, resume, overwrite, step_hooks)


def _train(cfg, info, resume, overwrite, step_hooks):
    device = resolve_device(cfg.DEVICE, info.local_rank if info.enabled else None)
    files = RunFiles(run_folder(cfg))
    configure_backends(device, cfg.DETERMINISTIC)
    say(slow_amp_warning(cfg.SOLVER.AMP, device), info.is_main)
    init_process_group(info, device)
    try:
        seed_everything(cfg.SEED)  # identical model initialisation on every rank
        run, train_loader, test_loader = build_run(cfg, info, device)
        say(f"output: {files.folder} | device {device} x{info.world_size} | {describe_threads()} | "
            f"{describe_inputs(cfg)}", info.is_main)
        say(describe_speed_settings(cfg, device), info.is_main)
        replay, line = replay_for([run], input_views(cfg), needs_index(cfg), device, info.world_size)
        say(line, info.is_main)
        replayed = {"step": SharedTeacherStep([run], replay=replay)} if replay else {}
        trainer = Trainer(cfg, run, train_loader, test_loader, device, info, step_hooks=step_hooks, **replayed)
        best = trainer.fit(resume=resume, overwrite=overwrite)[0]
        # Tear the group down only once every rank is done: a rank that leaves while a peer is
        # still inside a gloo/NCCL call can abort that peer ("terminate called ...").
        barrier(info)
        return best
    finally:
        destroy_process_group()


def train_prepared(cfg, distiller, train_loader, test_loader, folder, resume=False):
    """Train a distiller and loaders that the caller built (an mdistiller-style script through
    engine/upstream.py) into `folder`, with `train`'s checks, trainer, checkpoints and
    exact resume; the folder is claimed (engine/run_lock.py) while it trains. One process, no
    --overwrite: a folder with results is only continued, with `resume`. Returns the best top-1."""
    files = RunFiles(folder)
    problem = check_start(files, resume, False, cfg, ways=SCRIPT_WAYS)
    if problem:
        raise CheckpointError(problem)
    check_distiller_cfg(cfg)
    device = resolve_device(cfg.DEVICE)
    configure_backends(device, cfg.DETERMINISTIC)
    say(slow_amp_warning(cfg.SOLVER.AMP, device))
    with claimed([files.folder]) as held:
        if held:
            raise CheckpointError(f"run folder {files.folder} is being trained by {describe(held[1])}; wait for it "
                                  f"to end (or stop it) and run again, with --resume to continue it")
        run = StudentRun(cfg, distiller, files.folder, device)
        say(f"output: {files.folder} | device {device} | {describe_inputs(cfg)}")
        say(describe_speed_settings(cfg, device))
        return Trainer(cfg, run, train_loader, test_loader, device).fit(resume=resume)[0]


def build_paired_runs(cfgs, info, device):
    """(StudentRuns, view count per run, train loader, test loader) of a paired group: one
    loader carrying the union of the runs' inputs (two views if any run takes two, indices if
    any needs them) and one teacher object. Each student (and connector) starts from the random state its solo run has
    at that point, so its initial weights equal the solo run's; a teacher whose weights differ
    from the first one is refused."""
    from ..data import build_loaders

    views = [input_views(cfg) for cfg in cfgs]
    index_cfg = next((cfg for cfg in cfgs if needs_index(cfg)), None)
    train_loader, test_loader, num_data, num_classes = build_loaders(
        index_cfg or cfgs[0], max(views), with_index=index_cfg is not None, device=device)
    check_has_batches(cfgs[0], train_loader, num_data)
    after_loaders = capture_rng_state()
    teacher, distillers = None, []
    for cfg in cfgs:
        restore_rng_state(after_loaders)
        student, own_teacher = build_models(cfg, num_classes)
        # A distiller that runs its teacher in train mode moves its BatchNorm statistics: own copy.
        if own_teacher is not None and not teacher_train_key(cfg):
            if teacher is None:
                teacher = own_teacher
            elif not same_weights(teacher, own_teacher):
                raise ConfigError(f"paired runs need one teacher, but {run_folder(cfg)} loads other weights than "
                                  f"{run_folder(cfgs[0])}; use the same DISTILLER.TEACHER and TEACHER_WEIGHTS")
            own_teacher = teacher
        distiller = build_distiller(cfg, student, own_teacher, num_data)
        if cfg.DISTILLER.TYPE != "NONE":
            say(f"{run_folder(cfg)}: {extra_parameters_line(cfg, distiller)}", info.is_main)
        distillers.append(distiller)
    runs = [StudentRun(cfg, d, run_folder(cfg), device, info) for cfg, d in zip(cfgs, distillers)]
    return runs, views, train_loader, test_loader


def train_paired(cfgs, resume=False, overwrite=False, step_hooks=(), overlap=False):
    """Train every config's student in one process on the same batches, the teacher run once
    per batch (engine/paired.py). Returns each run's best test top-1, None for a run stopped
    because its loss diverged (the others go on)."""
    cfgs = list(cfgs)
    check_group(cfgs)
    info = env_dist_info()
    if info.enabled:
        raise ConfigError("paired training runs in one process; start it with python, not torchrun")

    def start(cfg):  # a stopped (diverged) run of the group stays stopped on resume
        if not (resume and stopped_reason(run_folder(cfg))):
            start_problem(cfg, resume, overwrite)

    check_inputs(cfgs, start)  # every input of every run at once, before any data is read
    with holding([run_folder(cfg) for cfg in cfgs]):
        return _train_paired(cfgs, info, resume, overwrite, step_hooks, overlap)


def _train_paired(cfgs, info, resume, overwrite, step_hooks, overlap):
    device = resolve_device(cfgs[0].DEVICE)
    configure_backends(device, cfgs[0].DETERMINISTIC)
    for amp in dict.fromkeys(cfg.SOLVER.AMP for cfg in cfgs):
        say(slow_amp_warning(amp, device), info.is_main)
    seed_everything(cfgs[0].SEED)
    runs, views, train_loader, test_loader = build_paired_runs(cfgs, info, device)
    replay, line = replay_for(runs, max(views), any(needs_index(cfg) for cfg in cfgs), device)
    step = SharedTeacherStep(runs, views, overlap=overlap, replay=replay)
    say(f"paired: {len(runs)} runs on one stream | device {device} | {describe_threads()} | "
        f"{max(views)} view(s) per image", info.is_main)
    say(describe_speed_settings(cfgs[0], device), info.is_main)
    say(line, info.is_main)
    trainer = Trainer(cfgs[0], runs, train_loader, test_loader, device, info, step_hooks=step_hooks, step=step,
                      stop_diverged=True)
    return trainer.fit(resume=resume, overwrite=overwrite)
