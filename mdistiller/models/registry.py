"""Name -> architecture lookup across the three zoos, with one-line errors for unknown names;
names with a colon (timm:..., torchvision:..., package.module:callable) go to external.py."""
from ..errors import ConfigError
from .cifar import cifar_model_dict
from .demo_cnn import demo_model_dict
from .external import build_external, check_kwargs, external_constructor, is_external, label_of, settings_key
from .imagenet import imagenet_model_dict
from .tiny_imagenet import tiny_imagenet_model_dict

# Which registry serves a DATASET.TYPE. Image folders and the demo data use the CIFAR
# architectures (global pooling lets them run at any resolution from 32x32 up).
_ZOO_OF_DATASET = {
    "cifar100": "cifar100",
    "imagefolder": "cifar100",
    "demo": "cifar100",
    "tiny_imagenet": "tiny_imagenet",
    "imagenet": "imagenet",
}


def _registry(dataset):
    if dataset == "demo":  # the demo's small CNNs (models/demo_cnn.py), then every CIFAR architecture
        return {**demo_model_dict, **{name: (ctor, None) for name, (ctor, _) in cifar_model_dict.items()}}
    zoo = _ZOO_OF_DATASET.get(dataset)
    if zoo is None:
        raise ConfigError(f"config key DATASET.TYPE is {dataset!r}; models exist for {', '.join(_ZOO_OF_DATASET)}")
    if zoo == "imagenet":
        return {name: (ctor, None) for name, ctor in imagenet_model_dict.items()}
    registry = cifar_model_dict if zoo == "cifar100" else tiny_imagenet_model_dict
    if zoo != dataset:  # default teacher checkpoints were trained on the zoo's own dataset only
        return {name: (ctor, None) for name, (ctor, _) in registry.items()}
    return registry


def model_names(dataset="cifar100"):
    """Architecture names available for a DATASET.TYPE, in registry order."""
    return list(_registry(dataset))


def model_entry(name, dataset="cifar100", key="DISTILLER.STUDENT"):
    """(constructor, default teacher checkpoint or None) for `name`; ConfigError naming `key`."""
    registry = _registry(dataset)
    if name not in registry:
        raise ConfigError(f"{label_of(key)} is {name!r}, not a {dataset} model; "
                          f"choose one of {', '.join(registry)}")
    return registry[name]


def create_model(name, num_classes, dataset="cifar100", key="DISTILLER.STUDENT", kwargs=None, features=(),
                 input_size=(32, 32)):
    """A freshly initialised `name` network with `num_classes` outputs. `kwargs` go to its
    constructor; `features` (module names) and `input_size` (of the probe forward) concern
    models from outside the zoo only (see adapter.py)."""
    if is_external(name):
        return build_external(name, num_classes, kwargs, features, input_size, key)
    constructor = zoo_constructor(name, dataset, key, features)
    if not kwargs:
        return constructor(num_classes=num_classes)
    try:
        return constructor(num_classes=num_classes, **dict(kwargs))
    except TypeError as err:
        raise ConfigError(f"{label_of(key)} is {name}, whose constructor refuses {settings_key(key)}_KWARGS "
                          f"{dict(kwargs)} ({err}); fix the arguments") from None


def zoo_constructor(name, dataset, key, features=()):
    """The zoo's constructor of `name`; a zoo model returns its own features, so `features` is refused."""
    if features:
        raise ConfigError(f"config key {settings_key(key)}_FEATURES is set, but {name} is a zoo model that returns "
                          f"its own features; clear {settings_key(key)}_FEATURES")
    return model_entry(name, dataset, key)[0]


def check_model(name, dataset="cifar100", key="DISTILLER.STUDENT", kwargs=None, features=(), **_):
    """What create_model(name, ...) would refuse before building anything: an unknown name, a
    name that is not a model (models/user_code.py), refused constructor arguments, features named
    for a zoo model. Calls nothing the name stands for, so a program checks its inputs before it
    reads any data."""
    if is_external(name):
        check_kwargs(external_constructor(name, key), dict(kwargs or {}), key)
    else:
        zoo_constructor(name, dataset, key, features)


def model_settings(cfg, role, input_size=(32, 32)):
    """create_model's keyword arguments for cfg's "STUDENT" or "TEACHER" (its _KWARGS, _FEATURES)."""
    d = cfg.DISTILLER
    return {"key": f"DISTILLER.{role}", "kwargs": dict(d[f"{role}_KWARGS"]), "features": list(d[f"{role}_FEATURES"]),
            "input_size": tuple(input_size)}


def check_model_names(cfg, teacher=True):
    """check_model for cfg's DISTILLER.STUDENT and, when `teacher`, DISTILLER.TEACHER."""
    for role in ("STUDENT", "TEACHER") if teacher else ("STUDENT",):
        check_model(cfg.DISTILLER[role], cfg.DATASET.TYPE, **model_settings(cfg, role))
