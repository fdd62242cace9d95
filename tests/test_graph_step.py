"""SOLVER.CUDA_GRAPH (engine/graph_step.py).

Capturing needs a GPU (the CUDA test at the end). On the CPU, `RerunGraphs` stands in for
torch.cuda.CUDAGraph with its semantics: `capture` records the step without leaving its effects
(a capture records kernels, it does not run them) and `replay` runs the step again, writing the
results into the very tensors capture returned, with gradients overwritten rather than added
to. That checks everything around the graph: the input copies, the LR tensor, the capturable
SGD update, eager warm-up and odd-sized batches, one capture per epoch, metrics and statistics.
"""
import contextlib
import glob
import os

import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.distillers import build_distiller
from mdistiller.distillers.sld import SLD
from mdistiller.engine.build import needs_index, train
from mdistiller.engine.graph_step import GraphedStep, check_cuda_graph, sgd_update
from mdistiller.engine.paired import check_group
from mdistiller.engine.objective import total_loss
from mdistiller.errors import ConfigError, UserError
from mdistiller.models import create_model
from helpers.outputs import worklog_blocks
from helpers.tiny import REPO, TinyNet, tiny_cfg, tiny_loaders, tiny_trainer


def copy_into(dst, src):
    if torch.is_tensor(dst):
        dst.copy_(src)
    elif isinstance(dst, dict):
        for key in dst:
            copy_into(dst[key], src[key])
    else:
        for a, b in zip(dst, src):
            copy_into(a, b)


class RerunGraphs:
    """CPU stand-in for CudaGraphs (module docstring)."""

    def __init__(self, module, optimizer):
        self.module, self.optimizer = module, optimizer
        self.warm_steps = 0

    @contextlib.contextmanager
    def warming(self):
        self.warm_steps += 1
        yield

    def capture(self, step):
        weights = {k: v.clone() for k, v in self.module.state_dict().items()}
        bufs = {p: s["momentum_buffer"].clone() for p, s in self.optimizer.state.items() if "momentum_buffer" in s}
        outputs = step()
        self.module.load_state_dict(weights)  # undo the step: capturing does not run it
        for p, buf in bufs.items():
            self.optimizer.state[p]["momentum_buffer"].copy_(buf)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]

        def replay():
            for p in params:
                if p.grad is not None:
                    p.grad.zero_()  # a replayed backward writes its gradient buffers, it does not add
            copy_into(outputs, step())

        return replay, outputs


# ---------------------------------------------------------------- the update
def test_sgd_update_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    opt.state[p]["momentum_buffer"] = torch.tensor([0.2])
    p.grad = torch.tensor([0.5])
    sgd_update(opt, torch.tensor(0.1))
    # d = 0.5 + 0.1 * 1 = 0.6; buf = 0.9 * 0.2 + 0.6 = 0.78; p = 1 - 0.1 * 0.78
    assert opt.state[p]["momentum_buffer"].item() == pytest.approx(0.78)
    assert p.item() == pytest.approx(0.922)


@pytest.mark.parametrize("kw", [dict(momentum=0.9, weight_decay=5e-4), dict(momentum=0.9, nesterov=True),
                                dict(momentum=0.9, dampening=0.1, weight_decay=1e-4),
                                dict(momentum=0.0, weight_decay=1e-4), dict(momentum=0.5, maximize=True)])
def test_sgd_update_follows_torch_sgd(kw):
    torch.manual_seed(0)
    ref = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(4)),
           torch.nn.Parameter(torch.randn(2))]  # the last gets no gradient: skipped by both
    ours = [torch.nn.Parameter(p.detach().clone()) for p in ref]
    opt_ref, opt_ours = torch.optim.SGD(ref, lr=0.05, **kw), torch.optim.SGD(ours, lr=0.05, **kw)
    lr = torch.tensor(0.05)
    for step in range(4):
        grads = [torch.randn_like(p) for p in ref[:2]]
        for params in (ref, ours):
            for p, g in zip(params, grads):
                p.grad = g.clone()
        opt_ref.step()
        if step == 0:
            opt_ours.step()  # the eager step that makes the momentum buffers
        else:
            sgd_update(opt_ours, lr)
    for a, b in zip(ref, ours):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    assert torch.equal(ours[2], ref[2])


def test_sgd_update_needs_momentum_buffers():
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="momentum buffers"):
        sgd_update(torch.optim.SGD([p], lr=0.1, momentum=0.9), torch.tensor(0.1))


# ---------------------------------------------------------------- training with a graphed step
def sld_trainer(tmp_path, name, graphed, amp="none"):
    """Two epochs of SLD (GAMMA 1: the student swap starts in epoch 2) on 60 samples in batches of
    16, 16, 16 and 12; `graphed` puts a GraphedStep with the CPU stand-in in the run's place."""
    cfg = tiny_cfg(tmp_path, "EXPERIMENT.NAME", name, "DISTILLER.TYPE", "SLD", "SLD.GAMMA", 1,
                   "SLD.TEMPERATURES", "[1.0, 2.0]", "SOLVER.TRAINER", "ours", "SOLVER.AMP", amp)
    trainer = tiny_trainer(cfg, views=2, distiller_cls=SLD, loaders=tiny_loaders(cfg, views=2, n=60))
    run = trainer.runs[0]
    if graphed:
        run.graphed = GraphedStep(run.model, run.optimizer, run.device, run.amp, run.stat_sources, warmup=1,
                                  graphs=RerunGraphs(run.distiller, run.optimizer))
    return trainer, run


@pytest.mark.parametrize("amp, tol", [("none", dict(rtol=1e-5, atol=1e-6)), ("bf16", dict(rtol=1e-2, atol=1e-3))])
def test_graphed_training_equals_eager_training(tmp_path, amp, tol):
    eager, eager_run = sld_trainer(tmp_path, "eager", graphed=False, amp=amp)
    graphed, run = sld_trainer(tmp_path, "graphed", graphed=True, amp=amp)
    eager.fit()
    graphed.fit()
    # epoch 1: warm-up (eager), capture + replay, replay, 12 samples (eager); epoch 2 captures anew
    assert run.graphed.counts == {"captured": 2, "replayed": 5, "eager": 3}
    assert run.graphed.graphs.warm_steps == 1
    for a, b in zip(eager_run.distiller.student.state_dict().values(), run.distiller.student.state_dict().values()):
        torch.testing.assert_close(b, a, **tol)
    logs = [worklog_blocks(os.path.join(r.files.folder, "worklog.txt"))[0] for r in (eager_run, run)]
    for (_, _, mine), (_, _, theirs) in zip(*logs):
        assert mine.keys() == theirs.keys() and any(k.startswith("swap.") for k in mine)
        for key in mine:  # loss, accuracy and the swap statistics the graph computed
            assert float(theirs[key]) == pytest.approx(float(mine[key]), abs=0.011), key


def test_an_eager_step_keeps_the_graphs_gradient_buffers(tmp_path):
    _, run = sld_trainer(tmp_path, "keep", graphed=True)
    step = run.graphed
    run.begin_epoch()
    run.lr = 0.05
    full = {"image_weak": torch.randn(4, 3, 8, 8), "image_strong": torch.randn(4, 3, 8, 8),
            "target": torch.arange(4), "index": torch.arange(4)}
    odd = {k: v[:3] for k, v in full.items()}
    step(full, 1, 0.05)  # warm-up
    step(full, 1, 0.05)  # capture + replay
    buffers = [p.grad for p in run.distiller.student.parameters()]
    step(odd, 1, 0.05)
    assert step.counts == {"captured": 1, "replayed": 1, "eager": 2}
    assert all(p.grad is g for p, g in zip(run.distiller.student.parameters(), buffers))
    # an LR change reaches the captured update through the LR tensor
    step(full, 1, 0.01)
    assert step.lr.item() == pytest.approx(0.01)


def test_a_step_that_cannot_be_captured_is_a_config_error(tmp_path):
    class Refusing:
        @contextlib.contextmanager
        def warming(self):
            yield

        def capture(self, step):
            raise RuntimeError("operation not permitted when stream is capturing\nmore detail")

    _, run = sld_trainer(tmp_path, "refuse", graphed=False)
    run.begin_epoch()
    step = GraphedStep(run.model, run.optimizer, run.device, warmup=0, graphs=Refusing())
    batch = {"image_weak": torch.randn(4, 3, 8, 8), "image_strong": torch.randn(4, 3, 8, 8), "target": torch.arange(4)}
    with pytest.raises(ConfigError, match=r"^config key SOLVER.CUDA_GRAPH is True but this distiller's step cannot "
                                          r"be captured as a CUDA graph \(operation not permitted when stream is "
                                          r"capturing\); set SOLVER.CUDA_GRAPH False$"):
        step(batch, 1, 0.05)


# ---------------------------------------------------------------- what can be captured
CIFAR_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "cifar100", "*.yaml"))
                       + glob.glob(os.path.join(REPO, "configs", "cifar100", "*", "res32x4_res8x4.yaml"))
                       + glob.glob(os.path.join(REPO, "configs", "cifar100", "sld_stack", "*.yaml")))


@pytest.mark.parametrize("path", CIFAR_CONFIGS, ids=lambda p: os.path.relpath(p, os.path.join(REPO, "configs")))
def test_every_built_in_step_leaves_values_on_the_device(path):
    """On the meta device tensors have shapes and no values, so a step that reads a value on the
    host (`.item()`, `if tensor:`, a boolean index, whose size the host must learn) fails there.
    Such a read is a device sync in every step and makes a CUDA-graph capture fail. (Necessary,
    not sufficient: a library kernel may still sync inside, e.g. a linear-algebra error check;
    the capture itself reports that.)"""
    cfg = load_cfg(path, [])
    with torch.device("meta"):
        student = create_model(cfg.DISTILLER.STUDENT, 100, "cifar100")
        teacher = create_model(cfg.DISTILLER.TEACHER, 100, "cifar100")
        distiller = build_distiller(cfg, student, teacher, num_data=1000)
    distiller.train()
    image = torch.empty(8, 3, 32, 32, device="meta")
    batch = {"image_weak": image, "image_strong": image} if cfg.DATASET.VIEWS == 2 else {"image": image}
    if needs_index(cfg):
        batch["index"] = torch.empty(8, dtype=torch.long, device="meta")
        batch["contrastive_index"] = torch.empty(8, cfg.CRD.NCE.K + 1, dtype=torch.long, device="meta")
    preds, losses = distiller(**batch, target=torch.empty(8, dtype=torch.long, device="meta"), epoch=200)
    total_loss(losses).backward()
    assert preds.shape == (8, 100)


# ---------------------------------------------------------------- what is refused
@pytest.mark.parametrize("opts, world, fix", [
    ((), 2, "the run has several processes"),
    (("SOLVER.TYPE", "Adam"), 1, "SOLVER.TYPE is Adam; use SGD"),
    (("SOLVER.AMP", "fp16"), 1, "SOLVER.AMP fp16's loss scaler"),
    (("SOLVER.TRAINER", "dot"), 1, "SOLVER.UPDATE dot updates in two passes"),
    (("SOLVER.COMPILE", True), 1, "SOLVER.COMPILE is on"),
])
def test_check_cuda_graph_refuses_what_cannot_be_captured(tmp_path, opts, world, fix):
    cfg = tiny_cfg(tmp_path, "SOLVER.CUDA_GRAPH", True, *opts)
    with pytest.raises(ConfigError, match=f"^config key SOLVER.CUDA_GRAPH is True but {fix}.*"
                                          "or set SOLVER.CUDA_GRAPH False$"):
        check_cuda_graph(cfg, torch.device("cuda"), world)
    check_cuda_graph(tiny_cfg(tmp_path, "SOLVER.CUDA_GRAPH", True, "SOLVER.AMP", "bf16"), torch.device("cuda"))


def test_a_cpu_run_with_cuda_graph_is_refused(tmp_path):
    cfg = tiny_cfg(tmp_path, "SOLVER.CUDA_GRAPH", True)
    with pytest.raises(ConfigError, match="^config key SOLVER.CUDA_GRAPH is True but the run is on cpu; "
                                          "set DEVICE cuda, or set SOLVER.CUDA_GRAPH False$"):
        tiny_trainer(cfg)
    # tools/train.py says so before it reads any data (the folder below does not exist: that is
    # the next line of the same error, engine/preflight.py)
    with pytest.raises(UserError, match="^config key SOLVER.CUDA_GRAPH is True but the run is on cpu[^\n]*\n"
                                        "CIFAR-100 not found"):
        train(tiny_cfg(tmp_path, "SOLVER.CUDA_GRAPH", True, "DATASET.ROOT", str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="^config key SOLVER.CUDA_GRAPH is True in b, but paired training"):
        check_group([tiny_cfg(tmp_path, "EXPERIMENT.NAME", "a"),
                     tiny_cfg(tmp_path, "EXPERIMENT.NAME", "b", "SOLVER.CUDA_GRAPH", True)])


# ---------------------------------------------------------------- the real thing
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_cuda_graph_training_equals_eager_training_on_the_gpu(tmp_path, amp):
    from mdistiller.engine.trainer import StudentRun, Trainer

    def fit(name, graph):
        cfg = tiny_cfg(tmp_path, "EXPERIMENT.NAME", name, "DISTILLER.TYPE", "SLD", "SLD.GAMMA", 1, "DEVICE", "cuda",
                       "SOLVER.TRAINER", "ours", "SOLVER.AMP", amp, "SOLVER.CUDA_GRAPH", graph)
        torch.manual_seed(0)
        device = torch.device("cuda")
        run = StudentRun(cfg, SLD(TinyNet(), TinyNet(), cfg), os.path.join(str(tmp_path), name), device)
        train, test = tiny_loaders(cfg, views=2, n=100)  # batches of 16 x 6 and 4 (the trainer moves them)
        Trainer(cfg, run, train, test, device).fit()
        return run

    eager, graphed = fit("eager", False), fit("graphed", True)
    # epoch 1: 3 warm-up steps, capture + 3 replays, the 4 samples eagerly; epoch 2: capture + 6 replays, 1 eager
    assert graphed.graphed.counts == {"captured": 2, "replayed": 9, "eager": 5}
    tol = dict(rtol=1e-4, atol=1e-5) if amp == "none" else dict(rtol=2e-2, atol=2e-3)
    for a, b in zip(eager.distiller.student.state_dict().values(), graphed.distiller.student.state_dict().values()):
        torch.testing.assert_close(b.float(), a.float(), **tol)
