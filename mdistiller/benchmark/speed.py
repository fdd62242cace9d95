"""Speed measurements behind `tools/bench_speed.py`: data pipelines, train steps, full epochs.

Two ways to train the same SLD step are timed in one process, on the same device and data:
  reference  what the official code does: a torchvision DataLoader with per-image PIL
             RandAugment, four separate forward passes (student and teacher per view) and one
             KL call per (view, temperature, target);
  ours       the fast on-device loader, one teacher pass over both views (in micro-batches:
             DISTILLER.TEACHER_CHUNK), every KL in one vectorised call (the distiller's own
             `forward_train`), with the config's speed settings (`benchmark_settings`: its
             defaults, `auto` resolved for the device, unless the tool's flags say otherwise):
             AMP, channels_last, torch.compile, a frozen compiled teacher
             (DISTILLER.TEACHER_COMPILE), a CUDA graph per step (SOLVER.CUDA_GRAPH).
Both do the same arithmetic (the tests check the losses are equal), so the ratio of their
images/s is the speed-up a user gets.
"""
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import ArraySource, TrainDataset
from ..data.fast.bench import two_view_throughput
from ..data.fast.loader import FastTrainLoader, images_to_tensor
from ..data.loaders import TRAIN, make_loader
from ..data.transforms import CIFAR100_MEAN, CIFAR100_STD, cifar_spec, train_views
from ..distillers import build_distiller
from ..distillers.losses import kd_loss, swap_logits
from ..engine.device import autocast, compile_networks, prepare_model, speed_settings, to_device
from ..engine.graph_step import WARMUP_STEPS, GraphedStep, check_cuda_graph
from ..engine.objective import total_loss
from ..engine.optim import build_optimizer
from ..engine.stat_sums import stat_sources
from ..engine.step import forward_losses
from ..distillers.shapes import input_size_for
from ..models import create_model, model_settings


def synthetic_cifar(n, num_classes=100, seed=0):
    """Random uint8 images (N, 32, 32, 3) and labels: the pipelines' cost does not depend on
    the pixel values, so timings on them stand for real CIFAR-100 of the same size."""
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8),
            rng.integers(0, num_classes, size=n).astype(np.int64))


def reference_sld_losses(student, teacher, images, target, epoch, cfg):
    """The official step's structure: four forwards, one KL call per view x temperature x term."""
    s_w, s_s = student(images[0])[0], student(images[1])[0]
    with torch.no_grad():
        t_w, t_s = teacher(images[0])[0], teacher(images[1])[0]
    ce = F.cross_entropy(s_w, target) + F.cross_entropy(s_s, target)
    kd = 0.0
    for s, t in ((s_w, t_w), (s_s, t_s)):
        for temperature in cfg.SLD.TEMPERATURES:
            kd = kd + kd_loss(s, swap_logits(t, target), temperature)
            if epoch > cfg.SLD.GAMMA:
                kd = kd + kd_loss(s, swap_logits(s, target), temperature)
    return cfg.KD.LOSS.CE_WEIGHT * ce + cfg.KD.LOSS.KD_WEIGHT * kd


def benchmark_settings(cfg, device, amp=None, channels_last=None, compile_=None, cuda_graph=None,
                       teacher_compile=None):
    """What `run_benchmark` runs ours with: each argument left None takes the config's value
    (`auto` resolved for `device`). Returns the keyword arguments and, under "auto", the names
    of the settings the config left to `auto`."""
    chosen = speed_settings(cfg, device)
    settings = {"amp": cfg.SOLVER.AMP if amp is None else amp,
                "channels_last": chosen["channels_last"] if channels_last is None else channels_last,
                "compile_": cfg.SOLVER.COMPILE if compile_ is None else compile_,
                "cuda_graph": cfg.SOLVER.CUDA_GRAPH if cuda_graph is None else cuda_graph,
                "teacher_chunk": chosen["teacher_chunk"],
                "teacher_compile": chosen["teacher_compile"] if teacher_compile is None else teacher_compile}
    auto = [name for name, value, given in (("channels_last", cfg.SOLVER.CHANNELS_LAST, channels_last),
                                            ("teacher_chunk", cfg.DISTILLER.TEACHER_CHUNK, None),
                                            ("teacher_compile", cfg.DISTILLER.TEACHER_COMPILE, teacher_compile))
            if value == "auto" and given is None]
    return settings, auto


def _models(cfg, num_classes, device, channels_last=False):
    torch.manual_seed(cfg.SEED)
    size = input_size_for(cfg) or (32, 32)
    student = create_model(cfg.DISTILLER.STUDENT, num_classes, cfg.DATASET.TYPE, **model_settings(cfg, "STUDENT", size))
    teacher = create_model(cfg.DISTILLER.TEACHER, num_classes, cfg.DATASET.TYPE, **model_settings(cfg, "TEACHER", size))
    distiller = build_distiller(cfg, student, teacher)
    return prepare_model(distiller, device, channels_last)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_steps(step, batches, warmup, device):
    """images/s of `step()` (returns the batch size) over `batches` calls after `warmup`."""
    for _ in range(warmup):
        step()
    _sync(device)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += step()
    _sync(device)
    return seen / (time.perf_counter() - start)


def _peak_reset(device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device):
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _endless(loader):
    while True:
        yield from loader


def reference_step_fn(cfg, images, labels, device, workers, epoch):
    distiller = _models(cfg, int(labels.max()) + 1, device)
    distiller.train()
    optimizer = build_optimizer(cfg, distiller.get_learnable_parameters())
    dataset = TrainDataset(ArraySource(images, labels), train_views(cifar_spec(), 2))
    loader = make_loader(dataset, cfg.SOLVER.BATCH_SIZE, TRAIN, cfg.SEED, num_workers=workers,
                         pin_memory=device.type == "cuda")
    stream = _endless(loader)

    def step():
        batch = to_device(next(stream), device)
        loss = reference_sld_losses(distiller.student, distiller.teacher,
                                    (batch["image_weak"], batch["image_strong"]), batch["target"], epoch, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return batch["target"].shape[0]

    return step, len(loader)


def our_step_fn(cfg, images, labels, device, workers, epoch, amp="none", channels_last=False, compile_=False,
                block_size=None, cuda_graph=False, teacher_chunk=0, teacher_compile=False):
    """`block_size` None = the loader's default (what training uses). The fast loader augments a
    block of samples at once; a short timed window inside one block would leave the augmentation
    out, so the step measurement passes one batch per block (every step pays for its own views).
    `cuda_graph`: the trainer's GraphedStep (its first WARMUP_STEPS + 1 calls warm up and capture)."""
    distiller = _models(cfg, int(labels.max()) + 1, device, channels_last)
    distiller.teacher_chunk = teacher_chunk
    compile_networks(distiller, compile_, teacher_compile)  # compiles lazily: the untimed steps
    distiller.train()
    optimizer = build_optimizer(cfg, distiller.get_learnable_parameters())
    loader = FastTrainLoader(images_to_tensor(images, device), torch.as_tensor(labels, device=device),
                             cfg.SOLVER.BATCH_SIZE, 2, CIFAR100_MEAN, CIFAR100_STD, seed=cfg.SEED,
                             num_workers=workers, channels_last=channels_last, block_size=block_size)
    stream = _endless(loader)
    graphed = GraphedStep(distiller, optimizer, device, amp, stat_sources(distiller)) if cuda_graph else None

    def step():
        batch = next(stream)
        if graphed is not None:
            graphed(batch, epoch, cfg.SOLVER.LR)
            return batch["target"].shape[0]
        with autocast(device, amp):
            _, losses = forward_losses(distiller, batch, epoch)
        loss = total_loss(losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return batch["target"].shape[0]

    return step, len(loader)


def run_benchmark(cfg, images, labels, device, batches=20, warmup=3, workers=2, epoch=None,
                  amp="none", channels_last=False, compile_=False, full_epoch=False, sections=("data", "step"),
                  cuda_graph=False, teacher_chunk=0, teacher_compile=False):
    """All measurements as a dict (see tools/bench_speed.py for the printed table). ConfigError
    when `cuda_graph` cannot work with the device, `amp` or `compile_`."""
    device = torch.device(device)
    if cuda_graph:
        wanted = cfg.clone()
        wanted.defrost()
        wanted.SOLVER.AMP, wanted.SOLVER.COMPILE = amp, compile_
        check_cuda_graph(wanted, device)
    # ours' untimed steps: lazy set-up, graph capture, compiling
    untimed = max(warmup, WARMUP_STEPS + 1) if cuda_graph else max(warmup, 1)
    epoch = cfg.SLD.GAMMA + 1 if epoch is None else epoch  # both SLD terms on: the costlier step
    out = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
           "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(), "batch_size": cfg.SOLVER.BATCH_SIZE,
           "images": int(len(labels)), "workers": workers, "epoch_for_loss": epoch, "amp": amp,
           "channels_last": channels_last, "compile": compile_, "cuda_graph": cuda_graph, "teacher_chunk": teacher_chunk,
           "teacher_compile": teacher_compile,
           "pair": f"{cfg.DISTILLER.TEACHER} -> {cfg.DISTILLER.STUDENT}", "distiller": cfg.DISTILLER.TYPE}
    if "data" in sections:
        # A whole epoch at least: the fast loader works in blocks of up to 8,192 samples, so a few
        # batches would time slicing a block computed during the warm-up, not the augmentation.
        epoch_batches = max(batches, len(labels) // cfg.SOLVER.BATCH_SIZE)
        out["data"] = two_view_throughput(images, labels, cfg.SOLVER.BATCH_SIZE, workers, epoch_batches,
                                          str(device), cfg.SEED)
        out["data"]["batches"] = epoch_batches
    if "step" in sections:
        _peak_reset(device)
        ref, ref_len = reference_step_fn(cfg, images, labels, device, workers, epoch)
        ref_ips = _timed_steps(ref, batches, warmup, device)
        ref_mem = _peak_mib(device)
        del ref
        _peak_reset(device)
        ours, _ = our_step_fn(cfg, images, labels, device, workers, epoch, amp, channels_last, compile_,
                              block_size=cfg.SOLVER.BATCH_SIZE, cuda_graph=cuda_graph, teacher_chunk=teacher_chunk,
                              teacher_compile=teacher_compile)
        compiles = cuda_graph or compile_ or teacher_compile  # the first call(s) capture or compile: untimed
        ours_ips = _timed_steps(ours, batches, untimed if compiles else warmup, device)
        out["step"] = {"reference": ref_ips, "ours": ours_ips, "speedup": ours_ips / ref_ips,
                       "reference_peak_mib": ref_mem, "ours_peak_mib": _peak_mib(device)}
        if full_epoch:
            ours, ours_len = our_step_fn(cfg, images, labels, device, workers, epoch, amp, channels_last, compile_,
                                         cuda_graph=cuda_graph, teacher_chunk=teacher_chunk,
                                         teacher_compile=teacher_compile)
            for _ in range(untimed):  # lazy initialisation (and capture), not an epoch's steady state
                ours()
            # One whole pass over the training set with our step (no evaluation), as an epoch.
            _sync(device)
            start = time.perf_counter()
            for _ in range(ours_len):
                ours()
            _sync(device)
            out["epoch_seconds"] = {"ours": time.perf_counter() - start, "iterations": ours_len,
                                    "reference_estimate": ref_len * cfg.SOLVER.BATCH_SIZE / ref_ips}
    return out


def format_table(result):
    """The measurements as aligned text lines."""
    auto = set(result.get("auto", ()))
    shown = lambda name: f"{name} {result.get(name)}{' (auto)' if name in auto else ''}"
    lines = [f"device {result['device_name']} | torch {result['torch']} | {result['pair']} {result['distiller']} | "
             f"batch {result['batch_size']} | {result['images']} images | workers {result['workers']} | "
             f"threads {result['threads']}",
             "ours: " + " | ".join(shown(name) for name in ("amp", "channels_last", "teacher_chunk", "teacher_compile",
                                                            "compile", "cuda_graph")),
             f"{'measure':<34}{'reference':>14}{'ours':>14}{'ratio':>9}"]
    if "data" in result:
        d = result["data"]
        lines.append(f"{'two-view data pipeline (img/s)':<34}{d['pil']:>14.0f}{d['fast']:>14.0f}{d['speedup']:>8.2f}x")
    if "step" in result:
        s = result["step"]
        lines.append(f"{'SLD train step (img/s)':<34}{s['reference']:>14.0f}{s['ours']:>14.0f}{s['speedup']:>8.2f}x")
        if s["ours_peak_mib"] is not None:
            lines.append(f"{'peak device memory (MiB)':<34}{s['reference_peak_mib']:>14.0f}{s['ours_peak_mib']:>14.0f}"
                         f"{s['ours_peak_mib'] / s['reference_peak_mib']:>8.2f}x")
    if "epoch_seconds" in result:
        e = result["epoch_seconds"]
        lines.append(f"{'one epoch, train only (s)':<34}{e['reference_estimate']:>13.1f}*{e['ours']:>14.2f}"
                     f"{e['reference_estimate'] / e['ours']:>8.2f}x")
        lines.append("* reference epoch estimated from its step throughput; ours measured over "
                     f"{e['iterations']} iterations")
    return lines
