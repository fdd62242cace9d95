"""From a config to a finished run: `train(cfg, resume, overwrite)` is what tools/train.py runs.

Order matters and is chosen to fail early: the output folder and the distiller's config are
checked before any data is read; the distiller class decides the data pipeline (views,
sample indices) before the loaders are built; the loaders give the number of classes the
models need. `train_paired(cfgs, ...)` trains several configs' students on one data stream with
one teacher pass per batch (engine/paired.py), each built exactly as its solo run would be.
"""
import os

from ..distillers import build_distiller, check_distiller_cfg, teacher_required
from ..distillers.inputs import input_views, needs_index, teacher_train_key
from ..errors import CheckpointError, ConfigError
from ..runtime.checkpoint_io import extract_student_state_dict, load_weights
from .device import configure_backends, describe_speed_settings, resolve_device, slow_amp_warning
from .distributed import barrier, destroy_process_group, env_dist_info, init_process_group
from .graph_step import check_cuda_graph
from .paired import SharedTeacherStep, check_group, same_weights
from .progress import say
from .run_folder import RunFiles, check_start, run_folder
from .seeding import capture_rng_state, restore_rng_state, seed_everything
from .teacher_cache import replay_for
from .trainer import StudentRun, Trainer, stopped_reason


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
    init = cfg.DISTILLER.STUDENT_WEIGHTS
    if init:
        if not os.path.isfile(init):
            raise CheckpointError(f"config key DISTILLER.STUDENT_WEIGHTS is {init!r}, which does not exist; "
                                  "point it to a .pth or .safetensors file, or leave it empty for random init")
        load_weights(student, init, extract=extract_student_state_dict)
    teacher = load_teacher(cfg, num_classes, size) if teacher_required(cfg) else None
    return student, teacher


def build_run(cfg, info, device):
    """(StudentRun, train loader, test loader) for one process."""
    from ..data import build_loaders

    views, with_index = input_views(cfg), needs_index(cfg)
    train_loader, test_loader, num_data, num_classes = build_loaders(
        cfg, views, with_index=with_index, rank=info.rank, world_size=info.world_size, device=device)
    student, teacher = build_models(cfg, num_classes)
    distiller = build_distiller(cfg, student, teacher, num_data)
    if cfg.DISTILLER.TYPE != "NONE":
        say(f"{cfg.DISTILLER.TYPE}: {distiller.get_extra_parameters()} extra parameters", info.is_main)
    run = StudentRun(cfg, distiller, run_folder(cfg), device, info)
    return run, train_loader, test_loader


def train(cfg, resume=False, overwrite=False, step_hooks=()):
    """Train as configured (one process, or one of torchrun's); returns the best test top-1."""
    info = env_dist_info()
    device = resolve_device(cfg.DEVICE, info.local_rank if info.enabled else None)
    files = RunFiles(run_folder(cfg))
    problem = check_start(files, resume, overwrite, cfg)
    if problem:  # before reading any data (the trainer checks again, in step with every rank)
        raise CheckpointError(problem)
    check_distiller_cfg(cfg)
    input_views(cfg)
    if cfg.SOLVER.CUDA_GRAPH:
        check_cuda_graph(cfg, device, info.world_size)  # again in StudentRun; here before any data is read
    configure_backends(device, cfg.DETERMINISTIC)
    say(slow_amp_warning(cfg.SOLVER.AMP, device), info.is_main)
    init_process_group(info, device)
    try:
        seed_everything(cfg.SEED)  # identical model initialisation on every rank
        run, train_loader, test_loader = build_run(cfg, info, device)
        say(f"output: {files.folder} | device {device} x{info.world_size} | {describe_inputs(cfg)}", info.is_main)
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
            say(f"{run_folder(cfg)}: {cfg.DISTILLER.TYPE} {distiller.get_extra_parameters()} extra parameters",
                info.is_main)
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
    for cfg in cfgs:
        files = RunFiles(run_folder(cfg))
        problem = None if resume and stopped_reason(files.folder) else check_start(files, resume, overwrite, cfg)
        if problem:  # before reading any data (the trainer checks again)
            raise CheckpointError(problem)
        check_distiller_cfg(cfg)
        input_views(cfg)
    device = resolve_device(cfgs[0].DEVICE)
    configure_backends(device, cfgs[0].DETERMINISTIC)
    for amp in dict.fromkeys(cfg.SOLVER.AMP for cfg in cfgs):
        say(slow_amp_warning(amp, device), info.is_main)
    seed_everything(cfgs[0].SEED)
    runs, views, train_loader, test_loader = build_paired_runs(cfgs, info, device)
    replay, line = replay_for(runs, max(views), any(needs_index(cfg) for cfg in cfgs), device)
    step = SharedTeacherStep(runs, views, overlap=overlap, replay=replay)
    say(f"paired: {len(runs)} runs on one stream | device {device} | {max(views)} view(s) per image", info.is_main)
    say(describe_speed_settings(cfgs[0], device), info.is_main)
    say(line, info.is_main)
    trainer = Trainer(cfgs[0], runs, train_loader, test_loader, device, info, step_hooks=step_hooks, step=step,
                      stop_diverged=True)
    return trainer.fit(resume=resume, overwrite=overwrite)
