"""Any classifier with the zoo's `(logits, feats)` contract, features taken by forward hooks.

`HookedClassifier(model, name, features=(), input_size=(32, 32))` wraps a module whose forward
returns logits (a timm or torchvision model, the user's own code). Its forward returns
`(logits, feats)` like every zoo model (see common.py):
  feats["feats"]        outputs of the modules named in `features`; when none are named, timm's
                        `feature_info` modules, else the last module of each spatial stage
  feats["pooled_feat"]  the input of the final classifier (the innermost module returning the logits)
  feats["preact_feats"] the input of each feature module's final activation; present only when
                        every feature module ends with one (timm/torchvision ResNets do, ViTs not)
Which modules these are is decided once, at construction, by one probe forward on a zero batch of
`input_size`, in eval mode and without gradient, so no BatchNorm statistic moves.

State-dict keys are the wrapped model's own (no `model.` prefix): weights saved from a plain
timm/torchvision model load into the wrapper, and a trained student's file loads into the plain
model.
"""
from functools import partial
from typing import NamedTuple

import torch
from torch import nn

from ..errors import ConfigError

# A stage's pre-activation is the input of one of these when it is the stage's last operation.
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Hardswish,
               nn.Mish, nn.PReLU)
# Pooling ends no stage: a global pool's 1x1 map is the classifier's input, not a stage feature.
POOLING = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d)
PREFIX = "model."


class Call(NamedTuple):
    """One finished submodule forward seen by the probe."""
    name: str
    module: nn.Module
    inp: object
    out: object
    version: int  # the output's in-place version counter when it was produced


def _record(calls, name, module, args, out):
    version = out._version if torch.is_tensor(out) else 0
    calls.append(Call(name, module, args[0] if args else None, out, version))


def probe_calls(model, input_size):
    """(logits, [Call, ...] in the order the submodules finish) of one forward on zeros, in eval
    mode without gradient; the model's training mode is restored afterwards."""
    calls = []
    handles = [m.register_forward_hook(partial(_record, calls, name)) for name, m in model.named_modules() if name]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.zeros(2, 3, *input_size))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return logits, calls


def _size(t):
    """(H, W) of a B x C x H x W map, else None."""
    return tuple(t.shape[-2:]) if torch.is_tensor(t) and t.dim() == 4 else None


def _inside_downsampler(call, by_name, next_size):
    """Whether an enclosing module takes this call's size in and gives the next smaller size out:
    the expansion conv of an inverted-residual block that then downsamples ends no stage."""
    parts = call.name.split(".")
    for i in range(1, len(parts)):
        outer = by_name.get(".".join(parts[:i]))
        if outer is not None and _size(outer.inp) == _size(call.out) and _size(outer.out) == next_size.get(_size(call.out)):
            return True
    return False


def stage_ends(calls):
    """Names of the last module producing each spatial size, kept only while the size shrinks
    (a squeeze-excitation's 1x1 map inside a larger stage is not a stage)."""
    by_name = {c.name: c for c in calls}
    sizes = sorted({_size(c.out) for c in calls if _size(c.out)}, key=lambda hw: -hw[0] * hw[1])
    next_size = dict(zip(sizes, sizes[1:]))
    last = {}
    for i, call in enumerate(calls):
        if _size(call.out) and not isinstance(call.module, POOLING) and not _inside_downsampler(call, by_name, next_size):
            last[_size(call.out)] = i
    kept = []
    for i in sorted(last.values(), reverse=True):
        if not kept or _area(calls[i]) > _area(calls[kept[-1]]):
            kept.append(i)
    return [calls[i].name for i in reversed(kept)]


def _area(call):
    h, w = _size(call.out)
    return h * w


def default_features(model, calls):
    """timm's `feature_info` module names when the model has them all, else the stage ends."""
    info = getattr(model, "feature_info", None)
    names = dict(model.named_modules())
    if isinstance(info, (list, tuple)) and info and all(isinstance(i, dict) for i in info):
        wanted = [i.get("module") for i in info]
        if all(n in names for n in wanted):
            return wanted
    return stage_ends(calls)


def classifier_name(calls, logits):
    """The innermost module whose output is the logits tensor, else the last Linear with the
    logits' shape; None when neither exists."""
    for call in calls:  # inner modules finish first
        if call.out is logits:
            return call.name
    linears = [c for c in calls if isinstance(c.module, nn.Linear) and c.out.shape == logits.shape]
    return linears[-1].name if linears else None


def final_activation(calls, feature, out):
    """Name of the activation module (`feature` itself or inside it) whose output is `out`."""
    found = None
    for call in calls:
        inside = call.name == feature or call.name.startswith(feature + ".")
        if inside and call.out is out and isinstance(call.module, ACTIVATIONS):
            found = call.name
    return found


def check_logits(name, logits, num_classes):
    if not torch.is_tensor(logits):
        raise ConfigError(f"model {name} returns {type(logits).__name__}, not a tensor of logits; wrap it so that "
                          "forward returns B x classes logits")
    if num_classes is not None and logits.shape[-1] != num_classes:
        raise ConfigError(f"model {name} returns {logits.shape[-1]} outputs but the dataset has {num_classes} "
                          "classes; its constructor must honour num_classes")


def check_feature_modules(name, model, names, last_call):
    """Every named module exists and runs in the forward pass (`last_call`: name -> Call)."""
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        top = ", ".join(n for n, _ in model.named_children())
        raise ConfigError(f"model {name} has no module {unknown[0]!r} to take features from; name submodules "
                          f"such as {top} (dotted paths reach inside them)")
    silent = [n for n in names if n not in last_call]
    if silent:
        raise ConfigError(f"module {silent[0]!r} of model {name} does not run in its forward pass; "
                          "name modules that do")


class HookedClassifier(nn.Module):
    """See the module docstring. `name` is how the config names the model (used in messages)."""

    may_lack_features = True  # feature distillers check what it gives (distillers/feature_base.py)

    def __init__(self, model, name, features=(), input_size=(32, 32), num_classes=None):
        super().__init__()
        self.model, self.name = model, name
        logits, calls = self._probe(input_size)
        check_logits(name, logits, num_classes)
        modules = dict(model.named_modules())
        self.feature_names = list(features) or default_features(model, calls)
        last_out = {c.name: c for c in calls}  # the last call of each module
        check_feature_modules(name, model, self.feature_names, last_out)
        self._stage_channels = [_channels(last_out[n].out) for n in self.feature_names]
        # A feature that a later in-place op overwrites must be copied when taken.
        self._clone = {n for n in self.feature_names if _changed_in_place(last_out[n])}
        self.classifier_name = classifier_name(calls, logits)
        preacts = [final_activation(calls, n, last_out[n].out) for n in self.feature_names]
        self.preact_names = preacts if preacts and all(preacts) else []
        self._taken = {}
        self._hook(modules)
        self._keep_own_keys()

    def _probe(self, input_size):
        try:
            return probe_calls(self.model, input_size)
        except (RuntimeError, AssertionError, ValueError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise ConfigError(f"model {self.name} fails on a {input_size[0]}x{input_size[1]} input ({first}); set "
                              "DATASET.IMAGE_SIZE to the training size, or give the model that input size in its "
                              "*_KWARGS (e.g. img_size for a timm ViT)") from None

    def _hook(self, modules):
        for i, name in enumerate(self.feature_names):
            modules[name].register_forward_hook(partial(self._take_output, ("feats", i), name in self._clone))
        for i, name in enumerate(self.preact_names):
            if getattr(modules[name], "inplace", False):
                modules[name].inplace = False  # an in-place activation would overwrite its input
            modules[name].register_forward_pre_hook(partial(self._take_input, ("preact", i)))
        if self.classifier_name is not None:
            modules[self.classifier_name].register_forward_pre_hook(partial(self._take_input, ("pooled", 0)))

    def _take_output(self, slot, clone, module, args, out):
        self._taken[slot] = out.clone() if clone else out

    def _take_input(self, slot, module, args):
        self._taken[slot] = args[0]  # a module called twice (a shared ReLU) keeps its last input

    def forward(self, x):
        self._taken.clear()
        logits = self.model(x)
        taken = self._taken
        feats = {"feats": [taken[("feats", i)] for i in range(len(self.feature_names))]}
        if self.preact_names:
            feats["preact_feats"] = [taken[("preact", i)] for i in range(len(self.preact_names))]
        if ("pooled", 0) in taken:
            feats["pooled_feat"] = torch.flatten(taken[("pooled", 0)], 1)
        return logits, feats

    def get_stage_channels(self):
        """Channels of each `feats["feats"]` entry (mdistiller's helper; OFD sizes connectors by it)."""
        return list(self._stage_channels)

    def _keep_own_keys(self):
        """Checkpoint keys without the `model.` prefix (see module docstring)."""
        self.register_state_dict_post_hook(_strip_prefix)
        self.register_load_state_dict_pre_hook(_add_prefix)


def _channels(out):
    """Channels of a B x C x H x W map, or of B x N x C tokens."""
    if not torch.is_tensor(out):
        return 0
    return out.shape[1] if out.dim() == 4 else out.shape[-1]


def _changed_in_place(call):
    return torch.is_tensor(call.out) and call.out._version != call.version


def _strip_prefix(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix + PREFIX)]:
        state_dict[prefix + key[len(prefix + PREFIX):]] = state_dict.pop(key)


def _add_prefix(module, state_dict, prefix, *args):
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(prefix + PREFIX)]:
        state_dict[prefix + PREFIX + key[len(prefix):]] = state_dict.pop(key)
