"""Name -> architecture lookup across the three zoos, with one-line errors for unknown names."""
from ..errors import ConfigError
from .cifar import cifar_model_dict
from .demo import demo_model_dict
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
    if dataset == "demo":  # the demo's small CNNs (models/demo.py), then every CIFAR architecture
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
        raise ConfigError(f"config key {key} is {name!r}, not a {dataset} model; "
                          f"choose one of {', '.join(registry)}")
    return registry[name]


def create_model(name, num_classes, dataset="cifar100", key="DISTILLER.STUDENT"):
    """A freshly initialised `name` network with `num_classes` outputs."""
    constructor, _ = model_entry(name, dataset, key)
    return constructor(num_classes=num_classes)
