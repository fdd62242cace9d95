"""SLD.SWAP_MODE: the official single exchange ("max") and our "rotate" variant, on hand-made
rows, in SLD's teacher and student swaps and the swapped variants."""
import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.distillers import check_distiller_cfg
from mdistiller.distillers.losses import kd_loss, swap_logits
from mdistiller.errors import ConfigError
from helpers.logits import make, outs, random_logits

# target column first (already the top: unchanged), second (rotation = exchange) and last
ROWS = torch.tensor([[9.0, 1.0, 5.0, 3.0, 7.0],
                     [1.0, 5.0, 3.0, 4.0, 2.0],
                     [1.0, 2.0, 3.0, 4.0, 5.0]], dtype=torch.float64)
TARGET = torch.tensor([0, 3, 0])  # ranks: first, second, last


def test_rotate_hand_values():
    want = torch.tensor([[9.0, 1.0, 5.0, 3.0, 7.0],   # target holds the top: no change
                         [1.0, 4.0, 3.0, 5.0, 2.0],   # second: the top and the target trade places
                         [5.0, 1.0, 2.0, 3.0, 4.0]],  # last: target to the top, all others down one rank
                        dtype=torch.float64)
    assert torch.equal(swap_logits(ROWS, TARGET, "rotate"), want)


def test_max_swap_hand_values_and_where_the_modes_differ():
    want = torch.tensor([[9.0, 1.0, 5.0, 3.0, 7.0],
                         [1.0, 4.0, 3.0, 5.0, 2.0],
                         [5.0, 2.0, 3.0, 4.0, 1.0]], dtype=torch.float64)  # only target and top move
    assert torch.equal(swap_logits(ROWS, TARGET), want)
    assert torch.equal(swap_logits(ROWS, TARGET, "max"), want)
    # target third of five: rotate keeps the order of the non-target classes, max does not
    row, target = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0]]), torch.tensor([2])
    assert torch.equal(swap_logits(row, target, "rotate"), torch.tensor([[1.0, 4.0, 5.0, 3.0, 2.0]]))
    assert torch.equal(swap_logits(row, target, "max"), torch.tensor([[1.0, 3.0, 5.0, 4.0, 2.0]]))


def test_rotate_keeps_values_and_non_target_order_on_random_rows():
    z = torch.randn(3, 64, 10, dtype=torch.float64)
    target = torch.randint(0, 10, (64,))
    out = swap_logits(z, target, "rotate")
    assert torch.equal(out.sort(-1).values, z.sort(-1).values)  # a permutation of each row
    assert torch.equal(out.argmax(-1), target.expand(3, 64))
    others = torch.ones(3, 64, 10, dtype=torch.bool).scatter_(-1, target.expand(3, 64).unsqueeze(-1), False)
    rank_before = z.argsort(-1).argsort(-1)[others].reshape(3, 64, 9).argsort(-1)
    rank_after = out.argsort(-1).argsort(-1)[others].reshape(3, 64, 9).argsort(-1)
    assert torch.equal(rank_before, rank_after)


def test_rotate_loss_and_gradient_float64():
    s = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    z = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 2, 5, 3])
    assert torch.autograd.gradcheck(lambda a, b: kd_loss(a, swap_logits(b, target, "rotate"), 2.0), (s, z))
    # the gradient follows the moved values: d out[top] / d in[target] = 1
    row = ROWS[2:].clone().requires_grad_()
    swap_logits(row, TARGET[2:], "rotate")[0, 0].backward()
    assert torch.equal(row.grad, torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]], dtype=torch.float64))


@pytest.mark.parametrize("mode", ["max", "rotate"])
def test_sld_swaps_teacher_and_student_by_the_mode(mode):
    s_w, s_s, t_w, t_s, target = random_logits(seed=31)
    sld = make("SLD", SLD__SWAP_MODE=mode, SLD__GAMMA=0)
    _, losses = sld.distill(outs(s_w, s_s), outs(t_w, t_s), target, epoch=1)
    temps = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    ts = sum(kd_loss(s, swap_logits(t, target, mode), temps).sum() for s, t in ((s_w, t_w), (s_s, t_s)))
    ss = sum(kd_loss(s, swap_logits(s, target, mode), temps).sum() for s in (s_w, s_s))
    torch.testing.assert_close(losses["loss_ts"], 0.9 * ts, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(losses["loss_ss"], 0.9 * ss, rtol=1e-12, atol=1e-14)
    official = make("SLD", SLD__GAMMA=0)
    official.distill(outs(s_w, s_s), outs(t_w, t_s), target, epoch=1)
    assert sld.last_stats.keys() == official.last_stats.keys()  # statistics describe the raw logits
    for key in sld.last_stats:
        torch.testing.assert_close(sld.last_stats[key], official.last_stats[key])


def test_swapped_variants_follow_the_mode():
    s_w, _, t_w, _, target = random_logits(seed=33)
    kd = make("KD_SWAP", SLD__SWAP_MODE="rotate").distill(outs(s_w), outs(t_w), target)[1]["loss_kd"]
    torch.testing.assert_close(kd, 0.9 * kd_loss(s_w, swap_logits(t_w, target, "rotate"), 4.0))
    assert not torch.allclose(kd, make("KD_SWAP").distill(outs(s_w), outs(t_w), target)[1]["loss_kd"])


def test_unknown_mode_is_refused():
    with pytest.raises(ConfigError, match=r"^config key SLD.SWAP_MODE is 'twice'; choose one of max, rotate$"):
        load_cfg(None, ["SLD.SWAP_MODE", "twice"])
    from helpers.logits import cfg_with
    for name in ("SLD", "KD_SWAP", "MLKD_SWAP"):  # before any model is built
        with pytest.raises(ConfigError, match=r"SLD.SWAP_MODE is 'all'"):
            check_distiller_cfg(cfg_with(DISTILLER__TYPE=name, SLD__SWAP_MODE="all"))
    with pytest.raises(ValueError, match="swap mode"):
        swap_logits(ROWS, TARGET, "all")
