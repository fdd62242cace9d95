"""Models from outside the zoo, named in the config as `<source>:<name>`:

  timm:<name>                 a timm model (`pip install -e ".[timm]"`), e.g. timm:resnet10t
  torchvision:<name>          a torchvision classification model, e.g. torchvision:resnet18
  package.module:callable     the user's own code, imported by module path; what it may name
                              (a model class or a model-building function) is checked before
                              anything is called: user_code.py

Each constructor is called with `num_classes` (from the dataset) and the config's keyword
arguments (DISTILLER.TEACHER_KWARGS / STUDENT_KWARGS). Nothing is downloaded unless those ask
for it (timm's `pretrained: true`, torchvision's `weights: ...`); a failed download is one line.
Keyword arguments that make timm read or write files itself (`checkpoint_path`, ...) are
refused: trained weights come through the safe checkpoint loader (*_WEIGHTS).
The result is wrapped by adapter.HookedClassifier for the `(logits, feats)` contract.
"""
from ..errors import ConfigError
from .adapter import HookedClassifier
from .user_code import ACCEPTED, Builder, resolve_user_callable

# How each way of naming a model is called in messages, which config keys hold its settings
# (<key>_KWARGS, <key>_FEATURES), and where its trained weights are given.
FLAGS = {
    "-m/--model": ("DISTILLER.STUDENT", "-c/--ckpt"),
    "--teacher-model": ("DISTILLER.TEACHER", "-t/--teacher"),
    "the teacher argument": ("DISTILLER.TEACHER", "DISTILLER.TEACHER_WEIGHTS"),
    "the student argument": ("DISTILLER.STUDENT", "DISTILLER.STUDENT_WEIGHTS"),
}
# timm.create_model arguments that load or store files on timm's own terms (a dict
# pretrained_cfg / pretrained_cfg_overlay may name a `file`, `url` or `hf_hub_id`).
TIMM_FILE_KWARGS = ("checkpoint_path", "pretrained_cfg_overlay", "cache_dir")


def is_external(name):
    return ":" in name


def label_of(key):
    """How messages name what named the model: `config key DISTILLER.STUDENT`, `-m/--model`, ..."""
    return key if key in FLAGS else f"config key {key}"


def settings_key(key):
    """The config key whose _KWARGS / _FEATURES apply to the model named by `key`."""
    return FLAGS[key][0] if key in FLAGS else key


def weights_arg(key):
    return FLAGS[key][1] if key in FLAGS else f"{key}_WEIGHTS"


def _timm_constructor(name, key):
    try:
        import timm
    except ImportError:
        raise ConfigError(f"{label_of(key)} is timm:{name}, but timm is not installed; "
                          "install it with pip install -e \".[timm]\" (or pip install timm)") from None
    if not timm.is_model(name):
        close = ", ".join(timm.list_models(f"*{name[:6]}*")[:5]) or "see timm.list_models()"
        raise ConfigError(f"{label_of(key)} is timm:{name}, which timm does not know; e.g. {close}")
    return Builder(lambda **kwargs: timm.create_model(name, **kwargs), "timm", name)


def _torchvision_constructor(name, key):
    from torchvision import models

    if name not in models.list_models(module=models):
        close = ", ".join(n for n in models.list_models(module=models) if n[:3] == name[:3]) or "resnet18"
        raise ConfigError(f"{label_of(key)} is torchvision:{name}, not a torchvision classification model; "
                          f"e.g. {close}")
    return Builder(lambda **kwargs: models.get_model(name, **kwargs), "torchvision", name)


def external_constructor(name, key):
    """The Builder `name` stands for (module docstring); nothing of it has been called."""
    source, _, attr = name.partition(":")
    if source == "timm":
        return _timm_constructor(attr, key)
    if source == "torchvision":
        return _torchvision_constructor(attr, key)
    if not attr:
        raise ConfigError(f"{label_of(key)} is {name!r}; {ACCEPTED}")
    return resolve_user_callable(source, attr, label_of(key))


def check_kwargs(builder, kwargs, key):
    """Refuse constructor arguments that would bypass the dataset or the safe checkpoint loader."""
    kw = f"{settings_key(key)}_KWARGS"
    if "num_classes" in kwargs:
        raise ConfigError(f"{kw} sets num_classes; remove it, the number of classes follows the dataset")
    if builder.library != "timm":
        return
    bad = [k for k in TIMM_FILE_KWARGS if k in kwargs] + (
        ["pretrained_cfg"] if not isinstance(kwargs.get("pretrained_cfg", ""), str) else [])
    if bad:
        raise ConfigError(f"{kw} sets {bad[0]}, with which timm would read or write files itself, outside the "
                          f"safe checkpoint loader; remove it and give trained weights with {weights_arg(key)} "
                          "(a published tag goes in the name, e.g. timm:resnet18.a1_in1k)")


def downloads_weights(kwargs):
    """Whether these constructor arguments ask timm/torchvision for published weights."""
    return bool(kwargs.get("pretrained")) or kwargs.get("weights") not in (None, "", "none", "None")


def published_weights_problem(name, kwargs, num_classes, key="DISTILLER.TEACHER"):
    """None when building `name` with `kwargs` loads published weights for the whole network, so
    that a teacher needs no TEACHER_WEIGHTS; else why not, as " (...)" ("" when none are asked for).
    Only timm and torchvision builders load published weights; `pretrained: true` elsewhere means
    whatever the user's function makes of it."""
    builder = external_constructor(name, key)  # a name that is no model is refused as such first
    if not downloads_weights(kwargs):
        return ""
    if builder.library is None:
        return (f" ({settings_key(key)}_KWARGS asks for published weights, which only timm: and torchvision: "
                "models load)")
    if builder.library == "torchvision":
        return None  # torchvision refuses weights for another number of classes (a ValueError: one line)
    from timm.models import get_pretrained_cfg

    published = get_pretrained_cfg(builder.model)
    if not kwargs.get("pretrained") or published is None or not (published.url or published.hf_hub_id):
        return f" (timm publishes no weights for {builder.model}: it would start random)"
    if num_classes is not None and published.num_classes and published.num_classes != num_classes:
        return (f" (timm's published {builder.model} classifies {published.num_classes} classes, the dataset has "
                f"{num_classes}: its classifier would start random)")
    return None


def build_external(name, num_classes, kwargs=None, features=(), input_size=(32, 32), key="DISTILLER.STUDENT"):
    """`name` (see module docstring) built with `num_classes` and `kwargs`, wrapped for our contract."""
    kwargs = dict(kwargs or {})
    builder = external_constructor(name, key)
    check_kwargs(builder, kwargs, key)
    try:
        model = builder.call(num_classes=num_classes, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{label_of(key)} is {name}, whose constructor refuses {settings_key(key)}_KWARGS "
                          f"{kwargs} ({_first_line(err)}); fix the arguments") from None
    except Exception as err:  # noqa: BLE001 - a failed download surfaces as one line
        if not (downloads_weights(kwargs) and _network_error(err)):
            raise
        raise ConfigError(f"downloading the published weights of {name} failed ({_first_line(err)}); without "
                          f"network, save them to a file elsewhere and pass it as {weights_arg(key)} instead of "
                          f"asking {settings_key(key)}_KWARGS to download") from None
    return HookedClassifier(model, name, features, input_size, num_classes)


def _first_line(err):
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:160]


def _network_error(err):
    """Errors of a download: OS/socket errors and the HTTP clients' own exception types."""
    return isinstance(err, OSError) or type(err).__module__.split(".")[0] in (
        "huggingface_hub", "httpx", "httpcore", "requests", "urllib3")
