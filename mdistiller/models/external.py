"""Models from outside the zoo, named in the config as `<source>:<name>`:

  timm:<name>                 a timm model (`pip install -e ".[timm]"`), e.g. timm:resnet10t
  torchvision:<name>          a torchvision classification model, e.g. torchvision:resnet18
  package.module:callable     the user's own code, imported by module path

Each constructor is called with `num_classes` (from the dataset) and the config's keyword
arguments (DISTILLER.TEACHER_KWARGS / STUDENT_KWARGS). Nothing is downloaded unless those ask
for it (timm's `pretrained: true`, torchvision's `weights: ...`); a failed download is one line.
The result is wrapped by adapter.HookedClassifier for the `(logits, feats)` contract.
"""
import importlib

from ..errors import ConfigError
from .adapter import HookedClassifier


def is_external(name):
    return ":" in name


def _timm_constructor(name, key):
    try:
        import timm
    except ImportError:
        raise ConfigError(f"config key {key} is timm:{name}, but timm is not installed; "
                          "install it with pip install -e \".[timm]\" (or pip install timm)") from None
    if not timm.is_model(name):
        close = ", ".join(timm.list_models(f"*{name[:6]}*")[:5]) or "see timm.list_models()"
        raise ConfigError(f"config key {key} is timm:{name}, which timm does not know; e.g. {close}")
    return lambda **kwargs: timm.create_model(name, **kwargs)


def _torchvision_constructor(name, key):
    from torchvision import models

    if name not in models.list_models(module=models):
        close = ", ".join(n for n in models.list_models(module=models) if n[:3] == name[:3]) or "resnet18"
        raise ConfigError(f"config key {key} is torchvision:{name}, not a torchvision classification model; "
                          f"e.g. {close}")
    return lambda **kwargs: models.get_model(name, **kwargs)


def _user_constructor(module_path, attr, key):
    try:
        module = importlib.import_module(module_path)
    except ImportError as err:
        raise ConfigError(f"config key {key} is {module_path}:{attr}, but {module_path} cannot be imported ({err}); "
                          "put its folder on PYTHONPATH or pip install its package") from None
    target = module
    for part in attr.split("."):
        target = getattr(target, part, None)
    if not callable(target):
        raise ConfigError(f"config key {key} is {module_path}:{attr}, but {module_path} has no callable {attr!r}; "
                          "name a class or function that takes num_classes and returns an nn.Module")
    return target


def external_constructor(name, key):
    source, _, attr = name.partition(":")
    if source == "timm":
        return _timm_constructor(attr, key)
    if source == "torchvision":
        return _torchvision_constructor(attr, key)
    if not attr or not all(part.isidentifier() for part in source.split(".") + attr.split(".")):
        raise ConfigError(f"config key {key} is {name!r}; write timm:<name>, torchvision:<name> or "
                          "package.module:callable")
    return _user_constructor(source, attr, key)


def downloads_weights(kwargs):
    """Whether these constructor arguments ask timm/torchvision for published weights."""
    return bool(kwargs.get("pretrained")) or kwargs.get("weights") not in (None, "", "none", "None")


def build_external(name, num_classes, kwargs=None, features=(), input_size=(32, 32), key="DISTILLER.STUDENT"):
    """`name` (see module docstring) built with `num_classes` and `kwargs`, wrapped for our contract."""
    kwargs = dict(kwargs or {})
    if "num_classes" in kwargs:
        raise ConfigError(f"{key}_KWARGS sets num_classes; remove it, the number of classes follows the dataset")
    constructor = external_constructor(name, key)
    try:
        model = constructor(num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config key {key} is {name}, whose constructor refuses {key}_KWARGS {kwargs} "
                          f"({_first_line(err)}); fix the arguments") from None
    except Exception as err:  # noqa: BLE001 - a failed download surfaces as one line
        if not (downloads_weights(kwargs) and _network_error(err)):
            raise
        raise ConfigError(f"downloading the published weights of {name} failed ({_first_line(err)}); without "
                          f"network, save them to a file elsewhere and pass it as {key}_WEIGHTS instead of "
                          f"asking {key}_KWARGS to download") from None
    return HookedClassifier(model, name, features, input_size, num_classes)


def _first_line(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:160]


def _network_error(err):
    """Errors of a download: OS/socket errors and the HTTP clients' own exception types."""
    return isinstance(err, OSError) or type(err).__module__.split(".")[0] in (
        "huggingface_hub", "httpx", "httpcore", "requests", "urllib3")
