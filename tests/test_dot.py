"""DOT optimizer: hand-computed updates, the DELTA = 0 identity with SGD, the config builder,
the loss split and a real distiller step."""
import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.engine.dot import (DistillationOrientedTrainer, build_dot_optimizer, dot_step, dot_update,
                                   split_losses)
from mdistiller.errors import ConfigError


def two_grad_step(opt, p, g_task, g_kd):
    """Feed explicit gradients: distillation first, then task, as the trainer does."""
    if g_kd is not None:
        p.grad = torch.tensor(g_kd)
        opt.step_kd()
        assert p.grad is None  # step_kd takes the gradient away
    p.grad = None if g_task is None else torch.tensor(g_task)
    opt.step()


def test_both_gradients_use_their_own_momentum():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = DistillationOrientedTrainer([p], lr=0.1, momentum=0.5, momentum_kd=0.9, weight_decay=0.1)
    two_grad_step(opt, p, [1.0], [2.0])
    # buffers start as the gradients: task 1 + 0.1 * 1 = 1.1, kd 2 (decay counted with the task part)
    assert p.item() == pytest.approx(1.0 - 0.1 * (1.1 + 2.0))
    p1 = p.item()
    two_grad_step(opt, p, [1.0], [2.0])
    task_buf = 0.5 * 1.1 + (1.0 + 0.1 * p1)
    kd_buf = 0.9 * 2.0 + 2.0
    assert p.item() == pytest.approx(p1 - 0.1 * (task_buf + kd_buf))
    assert set(opt.state[p]) == {"momentum_buffer", "momentum_kd_buffer"}
    assert opt.state[p]["momentum_kd_buffer"].item() == pytest.approx(kd_buf)


def test_one_gradient_only_is_plain_sgd_at_the_mean_momentum():
    """A parameter only one loss reaches (e.g. a connector) gets SGD with momentum (m_task + m_kd) / 2."""
    kd_only = torch.nn.Parameter(torch.tensor([1.0]))
    task_only = torch.nn.Parameter(torch.tensor([1.0]))
    opt = DistillationOrientedTrainer([kd_only, task_only], lr=0.1, momentum=0.5, momentum_kd=0.9, weight_decay=0.1)
    reference = [torch.nn.Parameter(torch.tensor([1.0])) for _ in range(2)]
    sgd = torch.optim.SGD(reference, lr=0.1, momentum=0.7, weight_decay=0.1)
    for g in ([2.0], [-1.0], [0.5]):
        opt.zero_grad(set_to_none=True)  # as dot_step does: no stale gradient joins step_kd
        kd_only.grad = torch.tensor(g)
        opt.step_kd()
        task_only.grad = torch.tensor(g)
        opt.step()
        for r in reference:
            r.grad = torch.tensor(g)
        sgd.step()
        assert kd_only.item() == pytest.approx(reference[0].item())
        assert task_only.item() == pytest.approx(reference[1].item())


def test_delta_zero_equals_sgd_on_the_summed_loss():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    head = torch.nn.Linear(3, 3)  # reached by the distillation loss only
    twin = [torch.nn.Parameter(p.detach().clone()) for p in list(net.parameters()) + list(head.parameters())]
    params = list(net.parameters()) + list(head.parameters())
    dot = DistillationOrientedTrainer(params, lr=0.05, momentum=0.9, momentum_kd=0.9, weight_decay=5e-4)
    sgd = torch.optim.SGD(twin, lr=0.05, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))

    def losses(ps):
        w1, b1, w2, b2, wh, bh = ps
        out = torch.relu(x @ w1.t() + b1) @ w2.t() + b2
        task = torch.nn.functional.cross_entropy(out, y)
        kd = (out @ wh.t() + bh).pow(2).mean()
        return {"loss_ce": task, "loss_kd": kd}

    for _ in range(4):
        dot_step(dot, losses(params))
        sgd.zero_grad()
        sum(losses(twin).values()).backward()
        sgd.step()
    for a, b in zip(params, twin):
        assert torch.allclose(a, b, atol=1e-6)


def test_build_dot_optimizer_reads_momentum_and_delta():
    cfg = load_cfg(None, ["SOLVER.TRAINER", "dot", "SOLVER.LR", 0.05, "SOLVER.WEIGHT_DECAY", 5e-4])
    opt = build_dot_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])
    group = opt.param_groups[0]
    assert group["momentum"] == pytest.approx(0.9 - 0.075) and group["momentum_kd"] == pytest.approx(0.9 + 0.075)
    assert (group["lr"], group["weight_decay"]) == (0.05, 5e-4)


@pytest.mark.parametrize("opts, message", [
    (["SOLVER.TYPE", "Adam"], "SOLVER.TYPE is 'Adam'; SOLVER.UPDATE dot is an SGD variant"),
    (["SOLVER.AMP", "fp16"], "SOLVER.AMP is fp16; SOLVER.UPDATE dot back-propagates twice"),
    (["SOLVER.NESTEROV", True], "SOLVER.NESTEROV is true"),
    (["SOLVER.DOT.DELTA", 0.2], "SOLVER.DOT.DELTA is 0.2; with SOLVER.MOMENTUM 0.9 both momenta"),
    (["SOLVER.DOT.DELTA", -0.1], "SOLVER.DOT.DELTA is -0.1"),
])
def test_build_dot_optimizer_rejects_unsupported_settings(opts, message):
    cfg = load_cfg(None, ["SOLVER.TRAINER", "dot", *opts])
    with pytest.raises(ConfigError, match=message):
        build_dot_optimizer(cfg, [torch.nn.Parameter(torch.zeros(1))])


def test_split_losses_puts_every_ce_term_in_the_task_loss():
    t = torch.tensor
    task, kd = split_losses({"SLD.loss_ce": t(1.0), "SLD.loss_ts": t(2.0), "SLD.loss_ss": t(3.0),
                             "REVIEWKD.loss_kd": t([4.0, 6.0]), "loss_ce": t(0.5)})
    assert (task.item(), kd.item()) == (1.5, 10.0)


def test_state_dict_round_trip_keeps_both_buffers():
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = DistillationOrientedTrainer([p], lr=0.1, momentum=0.8, momentum_kd=0.95)
    two_grad_step(opt, p, [1.0, 1.0], [0.5, 0.5])
    again = DistillationOrientedTrainer([p], lr=0.1, momentum=0.8, momentum_kd=0.95)
    again.load_state_dict(opt.state_dict())
    assert torch.equal(again.state[p]["momentum_kd_buffer"], opt.state[p]["momentum_kd_buffer"])


def test_dot_update_trains_a_real_distiller():
    from mdistiller.distillers import build_distiller
    from mdistiller.models import create_model

    torch.manual_seed(0)
    cfg = load_cfg(None, ["DISTILLER.TYPE", "FITNET", "SOLVER.TRAINER", "dot", "SOLVER.LR", 0.01])
    distiller = build_distiller(cfg, create_model("resnet8x4", 100), create_model("resnet32x4", 100)).train()

    class Run:  # what the trainer hands its update hooks
        optimizer = build_dot_optimizer(cfg, distiller.get_learnable_parameters())

    x, y = torch.randn(6, 3, 32, 32), torch.randint(0, 100, (6,))
    totals = [dot_update(Run, distiller(image=x, target=y, epoch=1)[1]).item() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(totals))) and totals[-1] < totals[0], totals
    state = Run.optimizer.state
    connector = distiller.conv_reg.conv.weight
    assert set(state[connector]) == {"momentum_kd_buffer"}  # reached by the distillation term only
    assert set(state[distiller.student.fc.weight]) == {"momentum_buffer"}  # the classifier: task only
    conv1 = distiller.student.conv1.weight
    assert set(state[conv1]) == {"momentum_buffer", "momentum_kd_buffer"}
