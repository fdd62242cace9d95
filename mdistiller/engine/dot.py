"""DOT: "DOT: A Distillation-Oriented Trainer" (Zhao et al., ICCV 2023).

Plain SGD sums the task (cross-entropy) and distillation gradients into one momentum buffer.
DOT keeps one buffer per loss and gives the distillation gradient the larger momentum, so the
distillation loss is optimised more thoroughly: with SOLVER.MOMENTUM = m and SOLVER.DOT.DELTA = d,
the task buffer uses m - d and the distillation buffer m + d (mdistiller's trainer "dot").

Per parameter and step (weight decay wd joins the task gradient):
  * gradients from both losses: buf_task = (m - d) buf_task + (g_task + wd p)
                                buf_kd   = (m + d) buf_kd   + g_kd
                                p -= lr (buf_task + buf_kd)
  * gradient from one loss only (e.g. a connector that only the distillation term reaches):
    ordinary SGD with momentum m on (g + wd p), in that loss's buffer.
A buffer starts as its first gradient (like torch.optim.SGD).

Use: the two losses are back-propagated separately, distillation first:
    loss_kd.backward(retain_graph=True)
    optimizer.step_kd()        # takes the gradients now in .grad as distillation gradients
    loss_task.backward()
    optimizer.step()           # .grad now holds the task gradients; updates the parameters
`dot_step(optimizer, losses_dict)` does exactly this for a distiller's loss dict. The trainer
uses it through its hooks: TRAINER_OPTIMIZERS["dot"] = build_dot_optimizer and
TRAINER_UPDATES["dot"] = dot_update.
"""
import torch
from torch.optim import Optimizer

from ..errors import ConfigError

TASK_TERM = "loss_ce"


class DistillationOrientedTrainer(Optimizer):
    """SGD with separate momentum buffers for task and distillation gradients (see module doc)."""

    def __init__(self, params, lr, momentum, momentum_kd, weight_decay=0.0):
        for name, value in (("lr", lr), ("momentum", momentum), ("momentum_kd", momentum_kd),
                            ("weight_decay", weight_decay)):
            if value < 0:
                raise ValueError(f"DOT {name} must be >= 0, got {value}")
        super().__init__(params, dict(lr=lr, momentum=momentum, momentum_kd=momentum_kd,
                                      weight_decay=weight_decay))
        self.kd_grads = {}  # parameter -> distillation gradient, between step_kd() and step()

    @torch.no_grad()
    def step_kd(self):
        """Move the current gradients aside as distillation gradients and clear .grad, so the
        task loss can be back-propagated next without zeroing anything."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.kd_grads[p] = p.grad
                    p.grad = None

    @torch.no_grad()
    def step(self, closure=None):
        """Update with the task gradients in .grad and the distillation gradients from step_kd()."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            m_task, m_kd = group["momentum"], group["momentum_kd"]
            m_single = (m_task + m_kd) / 2  # = SOLVER.MOMENTUM: plain SGD where only one loss reaches
            for p in group["params"]:
                g_task, g_kd = p.grad, self.kd_grads.pop(p, None)
                if g_task is None and g_kd is None:
                    continue
                state = self.state[p]
                both = g_task is not None and g_kd is not None
                update = 0
                if g_task is not None:
                    update = update + accumulate(state, "momentum_buffer", g_task.add(p, alpha=wd),
                                                 m_task if both else m_single)
                if g_kd is not None:
                    g = g_kd if both else g_kd.add(p, alpha=wd)  # decay counted once, with the task part
                    update = update + accumulate(state, "momentum_kd_buffer", g, m_kd if both else m_single)
                p.add_(update, alpha=-lr)
        self.kd_grads.clear()
        return loss


def accumulate(state, key, grad, momentum):
    """buf = momentum * buf + grad (buf = grad the first time); returns buf."""
    buf = state.get(key)
    if buf is None:
        state[key] = buf = grad.detach().clone()
    else:
        buf.mul_(momentum).add_(grad)
    return buf


def build_dot_optimizer(cfg, params):
    """DOT for SOLVER.UPDATE "dot": SGD only, momenta SOLVER.MOMENTUM -/+ SOLVER.DOT.DELTA.
    Signature of the trainer's `TRAINER_OPTIMIZERS` entries."""
    s = cfg.SOLVER
    if s.TYPE != "SGD":
        raise ConfigError(f"config key SOLVER.TYPE is {s.TYPE!r}; SOLVER.UPDATE dot is an SGD variant: "
                          "set SOLVER.TYPE to SGD")
    if s.NESTEROV:
        raise ConfigError("config key SOLVER.NESTEROV is true; SOLVER.UPDATE dot uses plain momentum: set it to false")
    if s.AMP == "fp16":
        raise ConfigError("config key SOLVER.AMP is fp16; SOLVER.UPDATE dot back-propagates twice per step, "
                          "which one fp16 gradient scaler cannot follow: use bf16 or none")
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        # DDP synchronises gradients once per backward and expects one backward per forward
        raise ConfigError("config key SOLVER.UPDATE is dot, which runs on one process only; "
                          "train with one GPU or set SOLVER.UPDATE sgd")
    delta = s.DOT.DELTA
    if not (0 <= delta <= s.MOMENTUM and s.MOMENTUM + delta < 1):
        raise ConfigError(f"config key SOLVER.DOT.DELTA is {delta}; with SOLVER.MOMENTUM {s.MOMENTUM} both "
                          f"momenta MOMENTUM - DELTA and MOMENTUM + DELTA must lie in [0, 1), e.g. 0.075")
    return DistillationOrientedTrainer(params, lr=s.LR, momentum=s.MOMENTUM - delta,
                                       momentum_kd=s.MOMENTUM + delta, weight_decay=s.WEIGHT_DECAY)


def split_losses(losses_dict):
    """(task loss, distillation loss): the task loss is the sum of the cross-entropy terms
    ("loss_ce", or "<NAME>.loss_ce" in a stack), the distillation loss the sum of all others.
    Each term counts by its mean, as in the trainer's total."""
    task, kd = 0.0, 0.0
    for name, value in losses_dict.items():
        if name == TASK_TERM or name.endswith("." + TASK_TERM):
            task = task + value.float().mean()
        else:
            kd = kd + value.float().mean()
    return task, kd


def dot_step(optimizer, losses_dict):
    """One DOT update from a distiller's loss dict; returns the (detached) total loss.

    A loss that does not depend on any parameter (e.g. a term switched off) contributes no
    gradient and is skipped instead of failing in backward()."""
    loss_task, loss_kd = split_losses(losses_dict)
    optimizer.zero_grad(set_to_none=True)
    if torch.is_tensor(loss_kd) and loss_kd.requires_grad:
        loss_kd.backward(retain_graph=True)
        optimizer.step_kd()
    if torch.is_tensor(loss_task) and loss_task.requires_grad:
        loss_task.backward()
    optimizer.step()
    return torch.as_tensor(loss_task + loss_kd).detach()


def dot_update(run, losses):
    """The trainer's update hook (`TRAINER_UPDATES["dot"]`): `run.optimizer` is the DOT optimizer."""
    return dot_step(run.optimizer, losses)
