"""DISTILLER.STACK: one forward per view for all terms, prefixed keys, one CE, shared views,
connectors trained, total = main + stacked terms, start-up errors for impossible stacks."""
from pathlib import Path

import pytest
import torch

from mdistiller.config import load_cfg
from mdistiller.distillers import Distiller, build_distiller, check_distiller_cfg, distiller_dict
from mdistiller.distillers.stack import Stack
from mdistiller.errors import ConfigError
from mdistiller.models import create_model

STACK_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "cifar100" / "sld_stack"
NUM_DATA = 16


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(1)
    return create_model("resnet32x4", 100)


def student():
    torch.manual_seed(2)
    return create_model("resnet8x4", 100)


def cfg_with(*opts):
    return load_cfg(None, ["DISTILLER.TEACHER", "resnet32x4", "DISTILLER.STUDENT", "resnet8x4", *opts])


def two_view_batch(size=4):
    g = torch.Generator().manual_seed(5)
    index = torch.arange(size)
    return {"image_weak": torch.randn(size, 3, 32, 32, generator=g),
            "image_strong": torch.randn(size, 3, 32, 32, generator=g),
            "target": torch.randint(0, 100, (size,), generator=g), "index": index,
            "contrastive_index": torch.cat([index[:, None], torch.randint(size, NUM_DATA, (size, 8), generator=g)], 1)}


def count_forwards(distiller):
    calls = {"student": 0, "teacher": 0}
    for key in calls:
        getattr(distiller, key).register_forward_hook(lambda *_, k=key: calls.__setitem__(k, calls[k] + 1))
    return calls


@pytest.mark.parametrize("stack", [["REVIEWKD"], ["FITNET", "AT"]])
def test_models_run_once_per_view_for_all_terms(stack, teacher):
    distiller = build_distiller(cfg_with("DISTILLER.TYPE", "SLD", "DISTILLER.STACK", stack), student(), teacher)
    assert isinstance(distiller, Stack)
    distiller.train()
    calls = count_forwards(distiller)
    logits, losses = distiller(**two_view_batch(), epoch=200)
    assert calls == {"student": 2, "teacher": 1}  # student per view, teacher once on both views
    expected = {"SLD.loss_ce", "SLD.loss_ts", "SLD.loss_ss"} | {f"{name}.loss_kd" for name in stack}
    assert set(losses) == expected  # stacked methods' own CE terms are dropped
    assert logits.shape == (4, 100)


def test_total_is_main_plus_stacked_terms_without_their_ce(teacher):
    """SLD+X total = SLD alone + X alone - X's loss_ce, on the same batch and weights."""
    data, epoch = two_view_batch(), 200
    cfg = cfg_with("DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["REVIEWKD", "FITNET"])
    stack = build_distiller(cfg, student(), teacher).train()
    _, stacked = stack(**data, epoch=epoch)

    _, alone = build_distiller(cfg_with("DISTILLER.TYPE", "SLD"), student(), teacher).train()(**data, epoch=epoch)
    expected = sum(alone.values())
    for name in ("REVIEWKD", "FITNET"):
        part = build_distiller(cfg_with("DISTILLER.TYPE", name), student(), teacher).train()
        part.load_state_dict(stack.parts[name].state_dict(), strict=False)  # same connector weights
        _, terms = part(**data, epoch=epoch)  # two views given; feature terms use the weak one
        expected = expected + sum(terms.values()) - terms["loss_ce"]
        assert torch.allclose(stacked[f"{name}.loss_kd"], terms["loss_kd"])
    assert torch.allclose(sum(stacked.values()), expected, rtol=1e-5)
    assert torch.allclose(stacked["SLD.loss_ce"], alone["loss_ce"])


def test_gradients_reach_connectors_and_parameters_are_listed_once(teacher):
    distiller = build_distiller(cfg_with("DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["REVIEWKD"]),
                                student(), teacher).train()
    connectors = list(distiller.parts["REVIEWKD"].parameters())
    assert distiller.get_extra_parameters() == sum(p.numel() for p in connectors) > 0
    learnable = distiller.get_learnable_parameters()
    assert len({id(p) for p in learnable}) == len(learnable)
    assert {id(p) for p in connectors} <= {id(p) for p in learnable}
    assert not {id(p) for p in teacher.parameters()} & {id(p) for p in learnable}
    _, losses = distiller(**two_view_batch(), epoch=30)
    sum(losses.values()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in connectors)
    assert all(p.grad is None for p in teacher.parameters())


def test_checkpoint_keys_hold_each_model_once(teacher):
    distiller = build_distiller(cfg_with("DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["FITNET"]), student(), teacher)
    keys = list(distiller.state_dict())
    assert sum(k.startswith("student.") for k in keys) == len(distiller.student.state_dict())
    assert sum(k.startswith("teacher.") for k in keys) == len(teacher.state_dict())
    assert {k.split(".")[0] for k in keys} == {"student", "teacher", "parts"}
    twin = build_distiller(cfg_with("DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["FITNET"]), student(), teacher)
    twin.load_state_dict(distiller.state_dict())  # strict round trip
    distiller.train()
    assert not distiller.teacher.training and distiller.parts["FITNET"].conv_reg.training


def test_stack_with_crd_needs_indices_and_passes_them(teacher):
    distiller = build_distiller(cfg_with("DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["CRD"]), student(), teacher,
                                num_data=NUM_DATA).train()
    assert distiller.needs_index and distiller.views == (1, 2)
    _, losses = distiller(**two_view_batch(), epoch=1)
    assert torch.isfinite(losses["CRD.loss_kd"]) and losses["CRD.loss_kd"] > 0


def test_stack_views_are_the_intersection(teacher):
    distiller = build_distiller(cfg_with("DISTILLER.TYPE", "MLKD", "DISTILLER.STACK", ["AT"]), student(), teacher)
    assert distiller.views == (2,)
    data = two_view_batch()
    with pytest.raises(ValueError, match="needs \\(2,\\) view"):
        distiller.train()(image=data["image_weak"], target=data["target"])


@pytest.fixture
def one_view_plugin():
    """A one-view-only distiller, and an mdistiller-style plug-in overriding forward_train."""
    class OneView(Distiller):
        views = (1,)

        def __init__(self, student, teacher, cfg):
            super().__init__(student, teacher)

        def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
            return student_outs[0][0], {}

    class Plugin(Distiller):
        def __init__(self, student, teacher, cfg):
            super().__init__(student, teacher)

        def forward_train(self, image, target, **kwargs):
            return self.student(image)[0], {}

    distiller_dict.update(ONE_VIEW_TEST=OneView, PLUGIN_TEST=Plugin)
    yield
    del distiller_dict["ONE_VIEW_TEST"], distiller_dict["PLUGIN_TEST"]


@pytest.mark.parametrize("opts, message", [
    (["DISTILLER.TYPE", "MLKD", "DISTILLER.STACK", ["ONE_VIEW_TEST"]],
     "DISTILLER.TYPE MLKD and DISTILLER.STACK entry ONE_VIEW_TEST need different inputs "
     r"\(2 views vs 1 view\); they cannot be stacked"),
    (["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["AT", "AT"]], "names AT twice"),
    (["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["SLD"]], "names SLD twice"),
    (["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["NOPE"]], "config key DISTILLER.STACK is 'NOPE'; registered"),
    (["DISTILLER.TYPE", "NONE", "DISTILLER.STACK", ["AT"]], "include NONE, which trains without a teacher"),
    (["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["PLUGIN_TEST"]], "PLUGIN_TEST, which overrides forward_train"),
    (["DISTILLER.TYPE", "SLD", "DISTILLER.STACK", ["AT"], "AT.P", -1], "AT.P is -1.0"),  # components' checks run
])
def test_impossible_stacks_fail_at_start_up(opts, message, one_view_plugin):
    with pytest.raises(ConfigError, match=message) as err:
        check_distiller_cfg(load_cfg(None, opts))  # before any model is built
    assert "\n" not in str(err.value)


EXAMPLES = {"sld_reviewkd.yaml": "REVIEWKD", "sld_fitnet.yaml": "FITNET", "sld_crd.yaml": "CRD", "sld_at.yaml": "AT"}


@pytest.mark.parametrize("name, stacked", sorted(EXAMPLES.items()))
def test_example_configs_build_and_step(name, stacked, teacher):
    cfg = load_cfg(STACK_CONFIGS / name)
    assert (cfg.DISTILLER.TYPE, list(cfg.DISTILLER.STACK)) == ("SLD", [stacked])
    assert (cfg.DISTILLER.TEACHER, cfg.DISTILLER.STUDENT, cfg.DATASET.VIEWS) == ("resnet32x4", "resnet8x4", 2)
    distiller = build_distiller(cfg, student(), teacher, num_data=NUM_DATA).train()
    _, losses = distiller(**two_view_batch(), epoch=1)
    assert f"{stacked}.loss_kd" in losses and all(torch.isfinite(v) for v in losses.values())
