"""mdistiller drop-in: distiller files written in mdistiller's style (relative imports of `_base`,
`_common`, `loss`; strict `forward_train` signatures per trainer; a CRD-style constructor with
`num_data`) train through tools/train.py when dropped into `mdistiller/distillers/` and
registered with two lines in its `__init__.py`, with SOLVER.CHANNELS_LAST left at auto (files in
the shape of SP.py and KDSVD.py `.view()` their features; OFD.py's imports scipy, whose absence is
one line naming the `upstream` extra; CRD.py's constructor calls `.cuda()`: the child stands in
for the GPU there, and without CUDA that constructor is a one-line error); a script in
mdistiller's style merges every YAML config with plain yacs through `mdistiller.engine.cfg`."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
import yaml

from mdistiller.config import load_cfg
from mdistiller.distillers import _base, _common, loss
from mdistiller.distillers.base import legacy_arguments
from mdistiller.distillers.build import build_distiller, takes_num_data
from mdistiller.models import create_model
from helpers.tiny import REPO, subprocess_env, write_colour_folder

UPSTREAM_STYLE = os.path.join(REPO, "tests", "fixtures", "upstream_style")
PLUGINS = {"HINT_LIKE": "HintLike", "TWO_VIEW_LIKE": "TwoViewLike", "KWARGS_LIKE": "KwargsLike",
           "CONTRAST_LIKE": "ContrastLike", "SIMILARITY_LIKE": "SimilarityLike", "SINGULAR_LIKE": "SingularLike",
           "MARGIN_LIKE": "MarginLike", "BANK_LIKE": "BankLike"}
# Stands in for the GPU in the child: `.cuda()` leaves a tensor or module where it is (BankLike's
# constructor calls it, as mdistiller's CRD.py does).
CUDA_STAND_IN = ("import torch; torch.Tensor.cuda = lambda self, *a, **k: self; "
                 "torch.nn.Module.cuda = lambda self, *a, **k: self; ")


# ------------------------------------------------------------------ configs with plain yacs
def config_yamls():
    """Every run config of the repository and the official-config fixtures (benchmark specs,
    whose top-level keys are lower case, are not run configs)."""
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
    paths += sorted(glob.glob(os.path.join(REPO, "tests", "fixtures", "official_configs", "*.yaml")))
    return [p for p in paths if all(k.isupper() for k in yaml.safe_load(open(p)))]


def test_an_upstream_style_script_merges_every_config_with_plain_yacs():
    paths = config_yamls()
    assert len(paths) > 90
    done = subprocess.run([sys.executable, os.path.join(UPSTREAM_STYLE, "load_configs.py")] + paths,
                          env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    merged = dict(line.split()[1:] for line in done.stdout.splitlines() if line.startswith("ok "))
    assert set(merged) == set(paths)
    # ImageNet configs of MLKD/SLD say `TEMPERATURE: 1`: an int, like mdistiller's default 4
    assert merged[os.path.join(REPO, "tests", "fixtures", "official_configs", "mlkd_imagenet.yaml")] == "1"
    assert "[INFO] CONFIG:" in done.stdout  # show_cfg


def test_defaults_keep_mdistillers_types_and_our_loader_makes_them_floats():
    from mdistiller.engine.cfg import CFG

    assert [type(v) for v in (CFG.KD.TEMPERATURE, CFG.AT.P, CFG.RKD.DISTANCE_WEIGHT, CFG.RKD.ANGLE_WEIGHT)] == [int] * 4
    assert CFG.SOLVER.TRAINER == "base"  # what mdistiller's scripts look up in their trainer_dict
    cfg = load_cfg(os.path.join(REPO, "tests", "fixtures", "official_configs", "mlkd_imagenet.yaml"),
                   ["AT.P", "2.5"])
    assert (cfg.KD.TEMPERATURE, cfg.AT.P, cfg.RKD.ANGLE_WEIGHT) == (1.0, 2.5, 50.0)
    assert all(isinstance(v, float) for v in (cfg.KD.TEMPERATURE, cfg.AT.P, cfg.RKD.ANGLE_WEIGHT))


# ------------------------------------------------------------------ the compatibility modules
def test_base_distiller_learns_only_the_student_unless_told():
    student, teacher = create_model("resnet8", 3), create_model("resnet8", 3)
    distiller = _base.Distiller(student, teacher)
    distiller.extra = torch.nn.Linear(2, 2)
    assert distiller.get_learnable_parameters() == list(student.parameters())  # mdistiller's contract
    assert distiller.get_extra_parameters() == 0
    distiller.train()
    assert student.training and not teacher.training
    vanilla = _base.Vanilla(student).train()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    logits, losses = vanilla(image=x, target=y, epoch=1, index=torch.arange(4))
    assert list(losses) == ["ce"] and torch.allclose(losses["ce"], F.cross_entropy(student(x)[0], y))


def test_plug_ins_on_our_base_class_train_each_parameter_once():
    """A file kept in the user's package subclasses our Distiller (its learnable parameters are
    all but the teacher's) and adds its module's parameters as for mdistiller's base class."""
    from mdistiller.distillers import Distiller
    from mdistiller.engine.optim import build_optimizer

    class OwnPackage(Distiller):
        def __init__(self, student, teacher):
            super().__init__(student, teacher)
            self.conv_reg = torch.nn.Conv2d(3, 3, 1)

        def get_learnable_parameters(self):
            return super().get_learnable_parameters() + list(self.conv_reg.parameters())

    distiller = OwnPackage(create_model("resnet8", 3), create_model("resnet8", 3))
    optimizer = build_optimizer(load_cfg(None, ["DISTILLER.TYPE", "KD"]), distiller.get_learnable_parameters())
    params = optimizer.param_groups[0]["params"]
    assert len(params) == len({id(p) for p in params}) == len(list(distiller.student.parameters())) + 2


def test_conv_reg_and_feat_shapes_as_mdistiller():
    torch.manual_seed(0)
    student, teacher = create_model("resnet8", 3), create_model("resnet32x4", 3)
    before = teacher.bn1.running_mean.clone()
    s_shapes, t_shapes = _common.get_feat_shapes(student, teacher, (32, 32))
    assert s_shapes[2] == torch.Size([1, 32, 16, 16]) and t_shapes[2] == torch.Size([1, 128, 16, 16])
    assert not torch.equal(before, teacher.bn1.running_mean)  # train-mode probe, as mdistiller's
    x = torch.randn(2, 32, 16, 16)
    with_relu, without = _common.ConvReg(s_shapes[2], t_shapes[2]), _common.ConvReg(s_shapes[2], t_shapes[2], False)
    without.load_state_dict(with_relu.state_dict())
    assert set(with_relu.state_dict()) >= {"conv.weight", "conv.bias", "bn.weight", "bn.bias"}
    assert torch.equal(with_relu(x), F.relu(without(x))) and (without(x) < 0).any()
    assert _common.ConvReg((1, 8, 8, 8), (1, 16, 4, 4))(torch.randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)


def test_cross_entropy_label_smooth_hand_value():
    logits, target = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    log_p = torch.log_softmax(logits, 1)[0]
    eps = 0.3
    expected = -((1 - eps + eps / 3) * log_p[0] + eps / 3 * (log_p[1] + log_p[2]))
    assert loss.CrossEntropyLabelSmooth(3, epsilon=eps)(logits, target).item() == pytest.approx(expected.item())
    per_sample = loss.CrossEntropyLabelSmooth(3, eps, use_gpu=False, reduction=False)(logits.repeat(2, 1), target.repeat(2))
    assert per_sample.shape == (2,) and per_sample[1].item() == pytest.approx(expected.item())


@pytest.mark.parametrize("batch_keys, expected", [
    (("image", "target", "index"), ("image", "target", "epoch")),
    (("image_weak", "image_strong", "target", "index"), ("image_weak", "image_strong", "target", "epoch")),
    (("image", "target", "index", "contrastive_index"), ("image", "target", "index", "contrastive_index")),
])
def test_kwargs_plug_ins_get_what_mdistillers_trainer_passes(batch_keys, expected):
    batch = dict.fromkeys(batch_keys, 0)
    batch["epoch"] = 3

    def forward_train(image=None, target=None, **kwargs):
        pass

    assert tuple(legacy_arguments(forward_train, batch)) == expected


def test_strict_plug_ins_get_the_arguments_they_name():
    def forward_train(image, target, index):
        pass

    batch = {"image": 1, "target": 2, "index": 3, "contrastive_index": 4, "epoch": 5}
    assert legacy_arguments(forward_train, batch) == {"image": 1, "target": 2, "index": 3}


def test_constructors_taking_num_data_get_it():
    class WithNumData(_base.Distiller):
        def __init__(self, student, teacher, cfg, num_data):
            super().__init__(student, teacher)
            self.num_data = num_data

    class Plain(_base.Distiller):
        def __init__(self, student, teacher, cfg):
            super().__init__(student, teacher)

    assert takes_num_data(WithNumData) and not takes_num_data(Plain)
    cfg = load_cfg(None, ["DISTILLER.TYPE", "KD"])
    from mdistiller.distillers import registry

    registry.distiller_dict["TEST_WITH_NUM_DATA"] = WithNumData
    try:
        built = build_distiller(load_cfg(None, ["DISTILLER.TYPE", "TEST_WITH_NUM_DATA"]),
                                create_model("resnet8", 3), create_model("resnet8", 3), num_data=77)
    finally:
        del registry.distiller_dict["TEST_WITH_NUM_DATA"]
    assert built.num_data == 77 and cfg.DISTILLER.TYPE == "KD"


# ------------------------------------------------------------------ dropped in, trained by tools/train.py
@pytest.fixture(scope="module")
def dropped_in(tmp_path_factory):
    """A copy of the package and tools/train.py with the plug-in files in mdistiller/distillers/,
    each registered the mdistiller way: an import and a distiller_dict line in __init__.py."""
    root = tmp_path_factory.mktemp("dropped_in")
    shutil.copytree(os.path.join(REPO, "mdistiller"), root / "mdistiller", ignore=shutil.ignore_patterns("__pycache__"))
    os.makedirs(root / "tools")
    shutil.copy(os.path.join(REPO, "tools", "train.py"), root / "tools" / "train.py")
    init = root / "mdistiller" / "distillers" / "__init__.py"
    lines = []
    for name, module in PLUGINS.items():
        shutil.copy(os.path.join(UPSTREAM_STYLE, "plugins", f"{module}.py"), root / "mdistiller" / "distillers")
        lines += [f"from .{module} import {module}", f'distiller_dict["{name}"] = {module}']
    with open(init, "a") as f:
        f.write("\n".join(lines) + "\n")
    data = root / "data"
    write_colour_folder(data, ("ant", "bee", "cat"))
    torch.manual_seed(0)
    torch.save({"model": create_model("resnet8", 3).state_dict()}, root / "teacher.pth")
    return root


CONTRAST = ["CRD.NCE.K", "4", "CRD.FEAT.STUDENT_DIM", "64", "CRD.FEAT.DIM", "16"]
RUNS = [  # (distiller, SOLVER.TRAINER, extra overrides); SOLVER.CHANNELS_LAST is left at auto
    ("HINT_LIKE", "base", ["FITNET.INPUT_SIZE", "[16, 16]"]),
    ("HINT_LIKE", "dot", []),
    ("TWO_VIEW_LIKE", "ours", []),
    ("KWARGS_LIKE", "base", []),
    ("CONTRAST_LIKE", "crd", CONTRAST),
    ("SIMILARITY_LIKE", "base", []),
    ("SINGULAR_LIKE", "base", []),
    ("MARGIN_LIKE", "base", []),
    ("BANK_LIKE", "crd", CONTRAST),
]


@pytest.fixture(scope="module")
def trained(dropped_in):
    """One epoch of each run, every one through the copy's tools/train.py `main(argv)`, all in one
    child process (one torch start-up); returns the child's exit code and output."""
    argvs = [train_argv(dropped_in, name, trainer, extra) for name, trainer, extra in RUNS]
    return run_train(dropped_in, argvs, CUDA_STAND_IN)


def train_argv(root, name, trainer, extra=()):
    return ["--quiet", "DEVICE", "cpu", "DATASET.TYPE", "imagefolder", "DATASET.ROOT",
            str(root / "data"), "DATASET.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "8",
            "SOLVER.EPOCHS", "1", "SOLVER.TRAINER", trainer, "LOG.PREFIX", str(root / "out"),
            "EXPERIMENT.PROJECT", "p", "EXPERIMENT.NAME", f"{name}_{trainer}", "DISTILLER.TYPE", name,
            "DISTILLER.TEACHER", "resnet8", "DISTILLER.STUDENT", "resnet8",
            "DISTILLER.TEACHER_WEIGHTS", str(root / "teacher.pth"), *extra]


def run_train(root, argvs, prelude=""):
    """Every argv through the copy's tools/train.py `main(argv)`, in one child process (one torch
    start-up) that runs `prelude` first; its exit code is the largest main returned."""
    script = (prelude + "import json, sys; sys.path.insert(0, sys.argv[1]); import train; "
              "sys.exit(max(train.main(argv) for argv in json.loads(sys.argv[2])))")
    return subprocess.run([sys.executable, "-c", script, str(root / "tools"), json.dumps(argvs)],
                          cwd=str(root), env=subprocess_env(), capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("name, trainer", [run[:2] for run in RUNS])
def test_dropped_in_plug_in_trains_an_epoch_through_tools_train(dropped_in, trained, name, trainer):
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"output: {dropped_in / 'out' / 'p' / f'{name}_{trainer}'}" in trained.stdout + trained.stderr
    worklog = open(dropped_in / "out" / "p" / f"{name}_{trainer}" / "worklog.txt").read()
    assert "epoch: 1" in worklog and "best_acc" in worklog
    assert not os.path.exists(os.path.join(REPO, "mdistiller", "distillers", f"{PLUGINS[name]}.py"))


@pytest.mark.parametrize("name", ["SIMILARITY_LIKE", "SINGULAR_LIKE"])
def test_channels_last_auto_leaves_view_calls_of_mdistiller_style_files_working(dropped_in, trained, name):
    """SP.py and KDSVD.py `.view()` their features: `auto` keeps the NCHW layout mdistiller gave
    them (the fast loader's NHWC batches included), and the start line says so."""
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert f"SOLVER.CHANNELS_LAST False (auto: off for the mdistiller-style distiller {name})" in trained.stdout


def test_a_missing_import_in_a_dropped_in_file_is_one_line_naming_the_extra(dropped_in):
    """OFD.py imports scipy.stats; without scipy (a None entry in sys.modules is how Python marks a
    module that cannot be imported) tools/train.py stops with one line: file, package, extra."""
    done = run_train(dropped_in, [train_argv(dropped_in, "KWARGS_LIKE", "base")], "import sys; sys.modules['scipy'] = None; ")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip() == (
        f"error: distiller file {os.path.join('mdistiller', 'distillers', 'MarginLike.py')} imports scipy.stats, which is "
        'not installed; install the "upstream" extra: pip install "mdistiller[upstream]" (pip install -e '
        '".[upstream]" in a clone)')


def test_a_file_calling_cuda_in_its_constructor_needs_a_gpu_and_says_so():
    """mdistiller's CRD.py moves tensors with `.cuda()` in its constructor: without CUDA that is
    one line (a ConfigError, which the tools print) naming the distiller, not a traceback."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: .cuda() works here")

    class BankLike(_base.Distiller):
        def __init__(self, student, teacher, cfg, num_data):
            super().__init__(student, teacher)
            self.table = torch.ones(num_data).cuda()

    from mdistiller.distillers import registry
    from mdistiller.errors import ConfigError

    registry.distiller_dict["TEST_BANK_LIKE"] = BankLike
    try:
        with pytest.raises(ConfigError, match=r"^distiller TEST_BANK_LIKE calls \.cuda\(\) in its constructor \(") as err:
            build_distiller(load_cfg(None, ["DISTILLER.TYPE", "TEST_BANK_LIKE"]), create_model("resnet8", 3),
                            create_model("resnet8", 3), num_data=8)
    finally:
        del registry.distiller_dict["TEST_BANK_LIKE"]
    assert "\n" not in str(err.value) and str(err.value).endswith("so it runs only on a machine with a CUDA GPU; "
                                                                 "run it there (DEVICE auto or cuda)")
