"""SOLVER.CUDA_GRAPH: a run's training step captured once as a CUDA graph, then replayed per batch.

Why. At CIFAR sizes (batch 64 of 32x32 images) an SLD step is about a thousand small kernels,
and launching them one by one from Python takes longer than running them: on an H100 an SLD
res32x4 -> res8x4 epoch took 14.4 s (~18 ms per step) for about a second of arithmetic. A
replayed graph launches the whole step in one call.

In the graph: the step's forward (engine/step.py's `forward_losses`: the distiller's teacher
pass, student passes and loss terms), the backward and the SGD update. Outside it, per batch:
copying the batch into the graph's input tensors, setting the LR tensor, and the metric sums
(which read the graph's outputs).

A graph replays fixed kernels on fixed memory without the host, hence:
  * the batch is copied into fixed input tensors; a batch of another shape (an epoch's last,
    smaller batch) runs eagerly, and so do the first `warmup` steps of a run (cuDNN picks its
    algorithms and the optimizer makes its momentum buffers there);
  * the LR is a device tensor read by the captured update (`sgd_update`: torch.optim.SGD's
    arithmetic, except that lr x update is rounded before being subtracted: weights differ
    from an eager run by float rounding, not bit for bit);
  * Python decisions taken during the forward are frozen at capture. Epoch-dependent ones (DKD's
    warm-up factor, SLD's student swap after GAMMA) are why the step is captured anew at each
    epoch's first full batch; anything else a forward decides must be decided with tensors;
  * gradients live in the graph's memory and are never set to None while it exists (an eager
    step zeroes them in place instead);
  * what a distiller reports in `last_stats` is computed by the graph: the tensors collected at
    capture are refreshed by every replay and returned with the losses.
`check_cuda_graph` refuses set-ups that cannot be captured.
"""
import contextlib

import torch

from .stat_sums import collect_stats
from ..errors import ConfigError
from .device import AMP_DTYPES
from .objective import total_loss
from .step import forward_losses

WARMUP_STEPS = 3  # eager steps before the first capture


def check_cuda_graph(cfg, device, world_size=1):
    """ConfigError (one line, with the fix) when SOLVER.CUDA_GRAPH cannot work with this config."""
    s = cfg.SOLVER
    problems = [
        (device.type != "cuda", f"the run is on {device}; set DEVICE cuda"),
        (world_size > 1, "the run has several processes; train with one (python, not torchrun)"),
        (s.TYPE != "SGD", f"SOLVER.TYPE is {s.TYPE}; use SGD"),
        (s.AMP == "fp16", "SOLVER.AMP fp16's loss scaler reads the GPU from the host; use bf16 or none"),
        (s.UPDATE == "dot", "SOLVER.UPDATE dot updates in two passes; use SOLVER.UPDATE sgd"),
        (s.COMPILE, "SOLVER.COMPILE is on; use one of the two"),
    ]
    for bad, fix in problems:
        if bad:
            raise ConfigError(f"config key SOLVER.CUDA_GRAPH is True but {fix}, or set SOLVER.CUDA_GRAPH False")


@torch.no_grad()
def sgd_update(optimizer, lr):
    """One step of a torch.optim.SGD optimizer with the learning rate taken from the 0-dim device
    tensor `lr`: foreach ops only, no host sync, so it can be captured. The momentum buffers must
    exist already (an eager `optimizer.step()` makes them); they are updated in place, so the
    optimizer's state_dict (checkpoints) stays the truth."""
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            continue
        grads = [p.grad for p in params]
        if group["maximize"]:
            grads = torch._foreach_neg(grads)
        if group["weight_decay"]:
            grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum:
            bufs = [optimizer.state[p].get("momentum_buffer") for p in params]
            if any(buf is None for buf in bufs):
                raise RuntimeError("sgd_update needs the momentum buffers: take one eager optimizer.step() first")
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, grads, alpha=1 - group["dampening"])
            grads = torch._foreach_add(grads, bufs, alpha=momentum) if group["nesterov"] else bufs
        torch._foreach_sub_(params, torch._foreach_mul(grads, lr))


class CudaGraphs:
    """Capture and replay with torch.cuda.CUDAGraph (tests stand in another object with the same
    two methods)."""

    def __init__(self, device):
        self.device = device
        self.side = None

    @contextlib.contextmanager
    def warming(self):
        """Eager warm-up steps run on a side stream, as torch's CUDA-graph notes ask, so that lazy
        initialisation does not happen on the stream a capture will use."""
        current = torch.cuda.current_stream(self.device)
        if self.side is None:
            self.side = torch.cuda.Stream(self.device)
        self.side.wait_stream(current)
        with torch.cuda.stream(self.side):
            yield
        current.wait_stream(self.side)

    def capture(self, step):
        """(replay, outputs): `step` recorded (not run) as a graph, and the tensors it returned,
        which every replay rewrites."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = step()
        return graph.replay, outputs


class GraphedStep:
    """One run's training step as a replayed CUDA graph (module docstring). Called with a batch
    dict, the epoch and the LR; returns (total loss, {term: loss}, predictions, statistics).
    `counts` says how many steps were captured, replayed and run eagerly."""

    def __init__(self, model, optimizer, device, amp="none", stat_sources=(), warmup=WARMUP_STEPS, graphs=None):
        self.model, self.optimizer, self.device = model, optimizer, device
        self.dtype = AMP_DTYPES.get(amp)
        self.stat_sources = list(stat_sources)
        self.graphs = graphs or CudaGraphs(device)
        self.warmup_left = warmup
        self.lr = torch.zeros((), dtype=torch.float32, device=device)
        self.lr_value = None
        self.replay = self.inputs = self.outputs = None
        self.epoch = None
        self.counts = {"captured": 0, "replayed": 0, "eager": 0}

    def __call__(self, batch, epoch, lr):
        if epoch != self.epoch:  # the forward's Python may depend on the epoch: capture anew
            self.epoch, self.replay, self.inputs, self.outputs = epoch, None, None, None
        if self.warmup_left > 0:
            self.warmup_left -= 1
            with self.graphs.warming():
                return self._eager(batch, epoch)
        if self.replay is None:
            self._capture(batch, epoch)
        elif not self._fits(batch):
            return self._eager(batch, epoch)
        for key, static in self.inputs.items():
            static.copy_(batch[key], non_blocking=True)
        if lr != self.lr_value:
            self.lr.fill_(lr)
            self.lr_value = lr
        self.replay()
        self.counts["replayed"] += 1
        return self.outputs

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        # No cast cache: a cached low-precision copy of a weight must not outlive one step's graph.
        return torch.autocast(self.device.type, dtype=self.dtype, cache_enabled=False)

    def _forward_backward(self, batch, epoch):
        with self._autocast():
            preds, losses = forward_losses(self.model, batch, epoch)
        loss = total_loss(losses)
        loss.backward()
        return (loss.detach(), {k: v.detach() for k, v in losses.items()}, preds.detach(),
                collect_stats(self.stat_sources))

    def _eager(self, batch, epoch):
        # While a graph exists its gradient buffers must stay: zero them in place.
        self.optimizer.zero_grad(set_to_none=self.replay is None)
        out = self._forward_backward(batch, epoch)
        self.optimizer.step()
        self.counts["eager"] += 1
        return out

    def _fits(self, batch):
        return batch.keys() == self.inputs.keys() and all(
            torch.is_tensor(batch[k]) and batch[k].shape == v.shape and batch[k].dtype == v.dtype
            for k, v in self.inputs.items())

    def _capture(self, batch, epoch):
        self.optimizer.zero_grad(set_to_none=True)  # the backward then writes fresh buffers in the graph
        self.inputs = {key: torch.as_tensor(value, device=self.device).clone() for key, value in batch.items()}

        def step():
            out = self._forward_backward(self.inputs, epoch)
            sgd_update(self.optimizer, self.lr)
            return out

        try:
            self.replay, self.outputs = self.graphs.capture(step)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            raise ConfigError(f"config key SOLVER.CUDA_GRAPH is True but this distiller's step cannot be captured "
                              f"as a CUDA graph ({first}); set SOLVER.CUDA_GRAPH False") from None
        self.lr_value = None  # the LR tensor is set before the first replay
        self.counts["captured"] += 1
