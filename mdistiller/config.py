"""The one config tree: every key, its default and what it means.

Key names are mdistiller's, so every YAML written for mdistiller, MLKD or the SLD authors' code
merges without edits. Keys that only this project has are marked "(new)".

Use `load_cfg(path, opts)` to get a validated, frozen config; bad keys, types and values raise
`ConfigError` with a one-line message naming the key.
"""
import numbers
import os

import yaml
from yacs.config import CfgNode as CN

from .errors import ConfigError
from .plugins import is_module_path, load_plugins

CFG = CN()

CFG.DEVICE = "auto"  # (new) "auto" (CUDA if available), "cuda", "cuda:N" or "cpu"
CFG.SEED = 0  # (new) seeds python, numpy, torch and data order; runs with the same seed repeat
CFG.DETERMINISTIC = False  # (new) ask torch for deterministic kernels (slower on GPU)
CFG.PLUGINS = []  # (new) modules imported before the config is read (their distillers, config sections)

# Experiment
CFG.EXPERIMENT = CN()
CFG.EXPERIMENT.PROJECT = "distill"  # output/<PROJECT>/...
CFG.EXPERIMENT.NAME = ""  # run folder name; empty = use TAG
CFG.EXPERIMENT.TAG = "default"  # run folder name when NAME is empty
CFG.EXPERIMENT.LOGIT_STAND = False  # standardize student/teacher logits in every logit loss (Sun et al. 2024)

# Dataset
CFG.DATASET = CN()
CFG.DATASET.TYPE = "cifar100"  # cifar100 | imagenet | tiny_imagenet | imagefolder | demo
CFG.DATASET.ROOT = "data"  # (new) folder holding the dataset (see README, "Data")
CFG.DATASET.NUM_WORKERS = 2  # DataLoader worker processes
CFG.DATASET.DOWNLOAD = False  # (new) let torchvision download CIFAR-100 when absent (needs network)
CFG.DATASET.TRAIN_SUBSET = 0  # (new) train on this many samples, stratified over classes; 0 = all
CFG.DATASET.TEST_SUBSET = 0  # (new) evaluate on this many samples, stratified; 0 = all
CFG.DATASET.LOADER = "pil"  # (new) "pil" (torchvision DataLoader) or "fast" (on-device augmentation)
CFG.DATASET.CACHE_DIR = ""  # (new) where decoded image arrays are cached; empty = ~/.cache/mdistiller ($XDG_CACHE_HOME)
CFG.DATASET.NUM_CLASSES = 0  # (new) imagefolder: number of classes; 0 = count the class folders
CFG.DATASET.IMAGE_SIZE = 0  # (new) imagefolder: training resolution; 0 = from the data
CFG.DATASET.VIEWS = "auto"  # (new) views per image: 1 (weak), 2 (weak + strong), auto (the distiller's choice), fewest
CFG.DATASET.INDICES = "auto"  # (new) batches carry sample/contrast indices: True, False, auto = if the distiller needs them (CRD)
CFG.DATASET.TEST = CN()
CFG.DATASET.TEST.BATCH_SIZE = 64  # evaluation batch size

# Distiller
CFG.DISTILLER = CN()
CFG.DISTILLER.TYPE = "NONE"  # registered distiller name (NONE = vanilla training); see README
CFG.DISTILLER.TEACHER = "ResNet50"  # teacher architecture name
CFG.DISTILLER.STUDENT = "resnet32"  # student architecture name
CFG.DISTILLER.TEACHER_WEIGHTS = ""  # (new) teacher checkpoint path (.pth or .safetensors); empty = the model zoo default
CFG.DISTILLER.STUDENT_WEIGHTS = ""  # (new) initial student weights (.pth or .safetensors); empty = random init
CFG.DISTILLER.TEACHER_KWARGS = CN(new_allowed=True)  # (new) teacher constructor arguments, e.g. {img_size: 32}
CFG.DISTILLER.STUDENT_KWARGS = CN(new_allowed=True)  # (new) student constructor arguments, e.g. {patch_size: 4}
CFG.DISTILLER.TEACHER_FEATURES = []  # (new) timm:/torchvision:/user models: modules hooked for feats; [] = auto
CFG.DISTILLER.STUDENT_FEATURES = []  # (new) the same for the student
CFG.DISTILLER.STACK = []  # (new) extra distillers whose loss terms are added, e.g. ["REVIEWKD"]
CFG.DISTILLER.FEATURE_VIEWS = "weak"  # (new) views feature terms use with two views: "weak" or "all"
CFG.DISTILLER.TEACHER_CHUNK = "auto"  # (new) samples per teacher forward (exact): N per view, 0 = all views in one, auto
CFG.DISTILLER.TEACHER_COMPILE = False  # (new) torch.compile the teacher, frozen (exact): True, False, auto (engine/device.py)
CFG.DISTILLER.TEACHER_CACHE = "off"  # (new) replay logit teachers' outputs: off, on (<LOG.PREFIX>/teacher_cache) or a folder
CFG.DISTILLER.TEACHER_CACHE_FP16 = False  # (new) store cached teacher logits as float16: half the disk, NOT exact

# Solver
CFG.SOLVER = CN()
CFG.SOLVER.UPDATE = "sgd"  # (new) update rule: "sgd" (one backward, then the SOLVER.TYPE optimizer step) or "dot" (DOT)
CFG.SOLVER.TRAINER = ""  # mdistiller's trainer name, an alias resolved at load time (TRAINER_ALIASES); "" = not set
CFG.SOLVER.BATCH_SIZE = 64  # training batch size (global, over all GPUs)
CFG.SOLVER.EPOCHS = 240  # number of epochs
CFG.SOLVER.LR = 0.05  # base learning rate
CFG.SOLVER.LR_DECAY_STAGES = [150, 180, 210]  # step schedule: LR *= RATE after each stage epoch
CFG.SOLVER.LR_DECAY_RATE = 0.1  # step schedule factor
CFG.SOLVER.LR_SCHEDULER = "step"  # (new) "step" (mdistiller's) or "cosine"
CFG.SOLVER.WARMUP_EPOCHS = 0  # (new) linear LR warm-up epochs before the schedule
CFG.SOLVER.WEIGHT_DECAY = 0.0001  # L2 weight decay
CFG.SOLVER.MOMENTUM = 0.9  # SGD momentum
CFG.SOLVER.NESTEROV = False  # (new) Nesterov momentum for SGD
CFG.SOLVER.TYPE = "SGD"  # "SGD", "Adam" or "AdamW"
CFG.SOLVER.AMP = "none"  # (new) mixed precision: "none", "bf16" or "fp16" (grad scaling)
CFG.SOLVER.CHANNELS_LAST = "auto"  # (new) channels_last layout for models and inputs: True, False, auto (engine/device.py)
CFG.SOLVER.COMPILE = False  # (new) torch.compile the student and the teacher
CFG.SOLVER.CUDA_GRAPH = False  # (new) capture the train step as a CUDA graph, replay it per batch (SGD, CUDA)
CFG.SOLVER.DOT = CN()
CFG.SOLVER.DOT.DELTA = 0.075  # DOT: momentum gap between distillation and task gradients

# Log
CFG.LOG = CN()
CFG.LOG.TENSORBOARD_FREQ = 500  # iterations between tensorboard scalars
CFG.LOG.SAVE_CHECKPOINT_FREQ = 40  # write epoch_N every this many epochs
CFG.LOG.PREFIX = "./output"  # root of output folders
CFG.LOG.WANDB = False  # log to Weights & Biases as mdistiller did (its default was True; needs the wandb extra)
CFG.LOG.QUIET = False  # (new) no progress bars, one summary line per epoch (for CI logs)

# ---------------------------------------------------------------- distillation methods
# KD (Hinton et al. 2015); its LOSS node also weighs MLKD and SLD, as in their official code.
CFG.KD = CN()
CFG.KD.TEMPERATURE = 4  # softmax temperature (int as in mdistiller, so its YAMLs merge with plain yacs)
CFG.KD.LOSS = CN()
CFG.KD.LOSS.CE_WEIGHT = 0.1  # cross-entropy weight
CFG.KD.LOSS.KD_WEIGHT = 0.9  # distillation weight

# SLD (Swapped Logit Distillation) (new node)
CFG.SLD = CN()
CFG.SLD.TEMPERATURES = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # prediction augmentation temperatures
CFG.SLD.GAMMA = 150  # student swap loss is added when epoch > GAMMA (epochs count from 1)
CFG.SLD.TEACHER_SWAP = True  # L_TS targets the swapped teacher logits; False = the raw teacher (plain KD)
CFG.SLD.STUDENT_SWAP = True  # add L_SS (student's own swapped logits) after GAMMA; False = L_TS only
CFG.SLD.DETACH_PSEUDO_TEACHER = False  # official: gradient flows through swap(z_s) too
CFG.SLD.SWAP_MODE = "max"  # "max": official single exchange of target and top; "rotate": our variant

# MLKD (Jin et al. 2023) (new node; MLKD itself uses KD.TEMPERATURE and KD.LOSS)
CFG.MLKD = CN()
CFG.MLKD.FAITHFUL = True  # official code's behaviour incl. its quirks; False = corrected variant

# AT
CFG.AT = CN()
CFG.AT.P = 2  # power applied to feature maps before summing over channels
CFG.AT.LOSS = CN()
CFG.AT.LOSS.CE_WEIGHT = 1.0
CFG.AT.LOSS.FEAT_WEIGHT = 1000.0

# RKD
CFG.RKD = CN()
CFG.RKD.DISTANCE_WEIGHT = 25  # distance-wise term weight
CFG.RKD.ANGLE_WEIGHT = 50  # angle-wise term weight
CFG.RKD.LOSS = CN()
CFG.RKD.LOSS.CE_WEIGHT = 1.0
CFG.RKD.LOSS.FEAT_WEIGHT = 1.0
CFG.RKD.PDIST = CN()
CFG.RKD.PDIST.EPSILON = 1e-12  # clamp for pairwise distances
CFG.RKD.PDIST.SQUARED = False  # squared pairwise distances

# FitNet
CFG.FITNET = CN()
CFG.FITNET.HINT_LAYER = 2  # which stage feature is the hint (0..4)
CFG.FITNET.INPUT_SIZE = (32, 32)  # input resolution used to infer feature shapes
CFG.FITNET.LOSS = CN()
CFG.FITNET.LOSS.CE_WEIGHT = 1.0
CFG.FITNET.LOSS.FEAT_WEIGHT = 100.0

# KDSVD
CFG.KDSVD = CN()
CFG.KDSVD.K = 1  # number of singular vectors kept
CFG.KDSVD.FAITHFUL = True  # (new) mdistiller's: SVD of each map as a (C*H) x W matrix; False = the paper's (H*W) x C
CFG.KDSVD.LOSS = CN()
CFG.KDSVD.LOSS.CE_WEIGHT = 1.0
CFG.KDSVD.LOSS.FEAT_WEIGHT = 1.0

# OFD
CFG.OFD = CN()
CFG.OFD.LOSS = CN()
CFG.OFD.LOSS.CE_WEIGHT = 1.0
CFG.OFD.LOSS.FEAT_WEIGHT = 0.001
CFG.OFD.CONNECTOR = CN()
CFG.OFD.CONNECTOR.KERNEL_SIZE = 1  # student->teacher connector conv kernel
CFG.OFD.FAITHFUL = True  # (new) mdistiller's: the teacher runs in train mode (batch statistics); False = eval mode

# NST
CFG.NST = CN()
CFG.NST.LOSS = CN()
CFG.NST.LOSS.CE_WEIGHT = 1.0
CFG.NST.LOSS.FEAT_WEIGHT = 50.0

# PKT
CFG.PKT = CN()
CFG.PKT.LOSS = CN()
CFG.PKT.LOSS.CE_WEIGHT = 1.0
CFG.PKT.LOSS.FEAT_WEIGHT = 30000.0

# SP
CFG.SP = CN()
CFG.SP.LOSS = CN()
CFG.SP.LOSS.CE_WEIGHT = 1.0
CFG.SP.LOSS.FEAT_WEIGHT = 3000.0

# VID
CFG.VID = CN()
CFG.VID.LOSS = CN()
CFG.VID.LOSS.CE_WEIGHT = 1.0
CFG.VID.LOSS.FEAT_WEIGHT = 1.0
CFG.VID.EPS = 1e-5  # variance floor
CFG.VID.INIT_PRED_VAR = 5.0  # initial predicted variance
CFG.VID.INPUT_SIZE = (32, 32)  # input resolution used to infer feature shapes
CFG.VID.FAITHFUL = True  # (new) mdistiller's: variances stay at INIT_PRED_VAR (never trained); False = learned

# CRD
CFG.CRD = CN()
CFG.CRD.MODE = "exact"  # negative sampling: "exact" (other classes only) or "relax"
CFG.CRD.FEAT = CN()
CFG.CRD.FEAT.DIM = 128  # embedding dimension
CFG.CRD.FEAT.STUDENT_DIM = 256  # student pooled feature dimension
CFG.CRD.FEAT.TEACHER_DIM = 256  # teacher pooled feature dimension
CFG.CRD.LOSS = CN()
CFG.CRD.LOSS.CE_WEIGHT = 1.0
CFG.CRD.LOSS.FEAT_WEIGHT = 0.8
CFG.CRD.NCE = CN()
CFG.CRD.NCE.K = 16384  # negatives per sample
CFG.CRD.NCE.MOMENTUM = 0.5  # memory bank momentum
CFG.CRD.NCE.TEMPERATURE = 0.07  # NCE temperature

# ReviewKD
CFG.REVIEWKD = CN()
CFG.REVIEWKD.CE_WEIGHT = 1.0
CFG.REVIEWKD.REVIEWKD_WEIGHT = 1.0
CFG.REVIEWKD.WARMUP_EPOCHS = 20  # linear warm-up of the review loss
CFG.REVIEWKD.SHAPES = [1, 8, 16, 32]  # student feature spatial sizes (deepest first)
CFG.REVIEWKD.OUT_SHAPES = [1, 8, 16, 32]  # teacher feature spatial sizes
CFG.REVIEWKD.IN_CHANNELS = [64, 128, 256, 256]  # student channels
CFG.REVIEWKD.OUT_CHANNELS = [64, 128, 256, 256]  # teacher channels
CFG.REVIEWKD.MAX_MID_CHANNEL = 512  # ABF middle channels cap
CFG.REVIEWKD.STU_PREACT = False  # use pre-activation student features

# DKD (Decoupled Knowledge Distillation)
CFG.DKD = CN()
CFG.DKD.CE_WEIGHT = 1.0
CFG.DKD.ALPHA = 1.0  # TCKD weight
CFG.DKD.BETA = 8.0  # NCKD weight
CFG.DKD.T = 4.0  # temperature
CFG.DKD.WARMUP = 20  # epochs of linear warm-up of the distillation terms

# DIST (Huang et al. 2022) (new node): tau^2 * (BETA * inter + GAMMA * intra) + CE_WEIGHT * CE
CFG.DIST = CN()
CFG.DIST.CE_WEIGHT = 1.0  # cross-entropy weight
CFG.DIST.BETA = 2.0  # inter-class relation weight (the authors' CIFAR setting)
CFG.DIST.GAMMA = 2.0  # intra-class relation weight
CFG.DIST.TAU = 4.0  # softmax temperature


# Real-valued keys whose mdistiller default is an int (so that plain yacs merges mdistiller's
# `TEMPERATURE: 1`): load_cfg accepts any number for them and makes it a float.
REAL_KEYS_WITH_INT_DEFAULTS = ("KD.TEMPERATURE", "AT.P", "RKD.DISTANCE_WEIGHT", "RKD.ANGLE_WEIGHT")


# Config sections that plug-ins add (distillers/registry.py `register(..., cfg_node=...)`): name
# -> defaults. Kept apart from CFG so that a clash with a built-in section is always detectable.
PLUGIN_SECTIONS = {}


def add_section(name, defaults):
    """Add a plug-in's config section `name` with its defaults (a yacs CfgNode or a dict) to every
    config loaded from now on; its keys are then validated like the built-in ones."""
    node = defaults if isinstance(defaults, CN) else CN(defaults)
    if not isinstance(name, str) or not name.isupper() or not name.replace("_", "").isalnum():
        raise ConfigError(f"config section {name!r}: name a plug-in's section in upper case, e.g. MY_KD")
    if name in CFG:
        raise ConfigError(f"config section {name} is built in; register the plug-in's section under another name")
    if name in PLUGIN_SECTIONS and _plain(PLUGIN_SECTIONS[name]) != _plain(node):
        raise ConfigError(f"config section {name} is registered twice with different defaults; register it once "
                          "(or give the second one another name)")
    PLUGIN_SECTIONS[name] = node.clone()


def get_cfg_defaults():
    """A fresh, mutable copy of the default tree, with the sections plug-ins added."""
    cfg = CFG.clone()
    for name, node in PLUGIN_SECTIONS.items():
        cfg[name] = node.clone()
    return cfg


def _describe(value):
    return f"{type(value).__name__} {value!r}"


# Keys whose value is "auto" or one of this type ("auto" is resolved at run time, for the device
# or the distiller), and the other words some of them take.
AUTO_OR = {"SOLVER.CHANNELS_LAST": bool, "DISTILLER.TEACHER_CHUNK": int, "DATASET.VIEWS": int,
           "DATASET.INDICES": bool, "DISTILLER.TEACHER_COMPILE": bool}
WORDS = {"DATASET.VIEWS": ("auto", "fewest")}
# String keys whose words YAML 1.1 reads as booleans (`on`/`off` -> True/False): the words back.
BOOL_WORDS = {"DISTILLER.TEACHER_CACHE": {True: "on", False: "off"}}


def _as_float(value):
    """A string that Python reads as a number (PyYAML reads `1e30` and `1e-3`, without a dot, as
    strings) becomes that float; anything else is left for the key's own check."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _coerce(default, value, key):
    """Value from YAML/command line, converted to the default's type or rejected."""
    if key in AUTO_OR:
        kind, words = AUTO_OR[key], WORDS.get(key, ("auto",))
        if value in words or (isinstance(value, kind) and (kind is bool or not isinstance(value, bool))):
            return value
        raise ConfigError(f"config key {key} expects {' or '.join(words)} or a {kind.__name__}, got {_describe(value)}")
    if isinstance(default, CN):
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key} is a section; got {_describe(value)}")
        return value
    if isinstance(value, bool) and key in BOOL_WORDS:
        return BOOL_WORDS[key][value]
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key} expects {type(default).__name__}, got {_describe(value)}")
    if key in REAL_KEYS_WITH_INT_DEFAULTS and isinstance(value, numbers.Real):
        return float(value)
    if isinstance(default, float) and isinstance(value, numbers.Real):
        return float(value)  # YAML "LR: 1" is an int; a float key accepts it
    if isinstance(default, float) and isinstance(_as_float(value), float):
        return _as_float(value)
    if isinstance(default, int) and isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        if default and all(isinstance(v, float) for v in default):  # a list of reals, e.g. SLD.TEMPERATURES
            return type(default)(_as_float(v) for v in value)
        return type(default)(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    raise ConfigError(f"config key {key} expects {type(default).__name__}, got {_describe(value)}")


def _merge(cfg, data, prefix=""):
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name not in cfg and not prefix and isinstance(value, dict):
            raise ConfigError(f"unknown config section {name}; if a plug-in adds it, name the plug-in's module in "
                              "PLUGINS (or pass --plugin MODULE)")
        if name not in cfg:
            close = ", ".join(sorted(k for k in cfg.keys() if not isinstance(cfg[k], CN))) or "none"
            raise ConfigError(f"unknown config key {key}; keys allowed here: {close}")
        value = _coerce(cfg[name], value, key)
        if isinstance(cfg[name], CN) and cfg[name].is_new_allowed():
            cfg[name] = CN(value, new_allowed=True)  # a free-form mapping (constructor kwargs): replaced whole
        elif isinstance(cfg[name], CN):
            _merge(cfg[name], value, key + ".")
        else:
            cfg[name] = value


def read_yaml(path):
    """A config file's mapping of sections, or a one-line ConfigError."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML with --cfg") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; pass a YAML file in it with --cfg") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (a binary file?); pass a YAML config with --cfg") from None
    except OSError as err:
        raise ConfigError(f"config file {path} cannot be read ({err.strerror or err}); pass a readable YAML "
                          "with --cfg") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: fix its syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return data


def opt_pairs(opts):
    """Command-line `KEY VALUE` overrides as (key, value) pairs, values parsed as YAML literals."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"command-line overrides come in KEY VALUE pairs; {opts[-1]!r} has no value")
    pairs = []
    for key, raw in zip(opts[0::2], opts[1::2]):
        try:
            value = yaml.safe_load(raw) if isinstance(raw, str) else raw
        except yaml.YAMLError:
            value = raw
        pairs.append((key, raw if value is None else value))
    return pairs


def merge_opts(cfg, opts):
    """Merge command-line `KEY VALUE` pairs (values parsed as YAML literals) into `cfg`."""
    _merge_pairs(cfg, opt_pairs(opts))


def _merge_pairs(cfg, pairs):
    for key, value in pairs:
        node, *rest = key.split(".")[::-1]
        data = {node: value}
        for part in rest:
            data = {part: data}
        _merge(cfg, data)


def load_cfg(path=None, opts=None, freeze=True):
    """Defaults <- YAML file <- `KEY VALUE` overrides, validated (and frozen).

    The plug-ins the file's and the overrides' PLUGINS name are imported first, so that their
    distillers and config sections exist when the rest is read; cfg.PLUGINS lists them all
    (an override adds to the file's list), so the saved config.yaml re-imports them on resume."""
    data = read_yaml(path) if path else {}
    plugins = _plugin_list(data.pop("PLUGINS", None) or [], f"in {path}")
    pairs = []
    for key, value in opt_pairs(opts):
        if key == "PLUGINS":
            plugins += [p for p in _plugin_list(value, "--plugin / command line") if p not in plugins]
        else:
            pairs.append((key, value))
    load_plugins(plugins)
    cfg = get_cfg_defaults()
    _merge(cfg, data)
    _merge_pairs(cfg, pairs)
    cfg.PLUGINS = plugins
    finish_cfg(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def finish_cfg(cfg):
    """What `load_cfg` does to a merged tree: SOLVER.TRAINER replaced by the keys it stands for,
    the real keys with int defaults made floats, every value validated. Also turns a tree that a
    script merged with plain yacs (`mdistiller.engine.cfg.CFG`) into the config the trainer reads."""
    _resolve_aliases(cfg)
    for key in REAL_KEYS_WITH_INT_DEFAULTS:  # the int defaults too: loaded configs hold floats
        section, name = key.rsplit(".", 1)
        _get(cfg, section)[name] = float(_get(cfg, key))
    validate_cfg(cfg)
    return cfg


def file_plugins(path):
    """The plug-in modules a config file lists in PLUGINS, read without importing any."""
    return _plugin_list(read_yaml(path).get("PLUGINS") or [], f"in {path}")


def command_line_plugins(opts):
    """The plug-in modules `KEY VALUE` overrides name (PLUGINS, as `--plugin` writes it)."""
    return [p for key, value in opt_pairs(opts) if key == "PLUGINS"
            for p in _plugin_list(value, "--plugin / command line")]


def _plugin_list(value, where):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"config key PLUGINS ({where}) is {value!r}; list module paths, e.g. [my_pkg.my_kd]")
    for name in value:  # a file path or a relative import would reach importlib as a TypeError
        if not is_module_path(name):
            raise ConfigError(f"config key PLUGINS ({where}) names {name!r}, which is not a module path; write "
                              "dotted module names such as my_pkg.my_kd, with the folder holding my_pkg on "
                              "PYTHONPATH")
    return list(dict.fromkeys(value))


# mdistiller's SOLVER.TRAINER named one trainer class per combination of three settings that are
# separate keys here; each name stands for the keys it sets, so that an old config trains as it
# did (the LS repository's configs call the two-view trainer "aug"). The one-view trainers gave a
# distiller the fewest views it takes: SLD on one view under "dot", where SOLVER.UPDATE dot alone
# (DATASET.VIEWS auto) gives it its two.
TRAINER_ALIASES = {
    "base": {"DATASET.VIEWS": "fewest"},
    "ours": {"DATASET.VIEWS": 2},
    "aug": {"DATASET.VIEWS": 2},
    "crd": {"DATASET.VIEWS": "fewest", "DATASET.INDICES": True},
    "dot": {"DATASET.VIEWS": "fewest", "SOLVER.UPDATE": "dot"},
    "crd_dot": {"DATASET.VIEWS": "fewest", "DATASET.INDICES": True, "SOLVER.UPDATE": "dot"},
}


def trainer_settings(trainer):
    """{key: value} that a SOLVER.TRAINER name stands for ("" = none); ConfigError for an unknown name."""
    if trainer == "":
        return {}
    if trainer not in TRAINER_ALIASES:
        raise ConfigError(f"config key SOLVER.TRAINER is {trainer!r}; choose one of {', '.join(TRAINER_ALIASES)}, or set "
                          "DATASET.VIEWS / DATASET.INDICES / SOLVER.UPDATE instead")
    return TRAINER_ALIASES[trainer]


def _resolve_aliases(cfg):
    """Replace SOLVER.TRAINER by the keys it stands for; ConfigError when one of them is already
    set to something else (e.g. SOLVER.TRAINER ours with DATASET.VIEWS 1)."""
    trainer = cfg.SOLVER.TRAINER
    defaults = get_cfg_defaults()
    for key, value in trainer_settings(trainer).items():
        section, name = key.rsplit(".", 1)
        current = _get(cfg, key)
        if current != value and current != _get(defaults, key):
            raise ConfigError(f"config keys SOLVER.TRAINER {trainer} and {key} {current} contradict each other "
                              f"(the trainer name means {key} {value}); drop SOLVER.TRAINER")
        _get(cfg, section)[name] = value
    cfg.SOLVER.TRAINER = ""


CHOICES = {
    "DATASET.TYPE": ("cifar100", "imagenet", "tiny_imagenet", "imagefolder", "demo"),
    "DATASET.LOADER": ("pil", "fast"),
    "SOLVER.UPDATE": ("sgd", "dot"),
    "SOLVER.TYPE": ("SGD", "Adam", "AdamW"),
    "SOLVER.AMP": ("none", "bf16", "fp16"),
    "SOLVER.LR_SCHEDULER": ("step", "cosine"),
    "CRD.MODE": ("exact", "relax"),
    "DISTILLER.FEATURE_VIEWS": ("weak", "all"),
    "SLD.SWAP_MODE": ("max", "rotate"),
}


# Loader processes per training process: more is a typo, not a machine (each is a whole Python
# process; 10**20 would fork until the machine stops).
MAX_NUM_WORKERS = 256

# numpy takes seeds below 2**32; per-rank and per-epoch offsets are added to SEED (engine/seeding.py)
MAX_SEED = 2**31 - 1


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _require(cond, message):
    if not cond:
        raise ConfigError(message)


def validate_cfg(cfg):
    """Check values that the key types alone cannot (choices, ranges). Names of models and
    distillers are checked where they are built (their registries know the choices)."""
    for key, choices in CHOICES.items():
        value = _get(cfg, key)
        _require(value in choices, f"config key {key} is {value!r}; choose one of {', '.join(choices)}")
    dev = cfg.DEVICE
    _require(dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit()),
             f"config key DEVICE is {dev!r}; choose auto, cpu, cuda or cuda:N")
    _require(0 <= cfg.SEED <= MAX_SEED, f"config key SEED is {cfg.SEED}; use a whole number from 0 to {MAX_SEED}")
    s = cfg.SOLVER
    _require(s.EPOCHS >= 1, f"config key SOLVER.EPOCHS is {s.EPOCHS}; it must be at least 1")
    _require(s.BATCH_SIZE >= 1, f"config key SOLVER.BATCH_SIZE is {s.BATCH_SIZE}; it must be at least 1")
    _require(cfg.DATASET.TEST.BATCH_SIZE >= 1,
             f"config key DATASET.TEST.BATCH_SIZE is {cfg.DATASET.TEST.BATCH_SIZE}; it must be at least 1")
    _require(s.LR > 0, f"config key SOLVER.LR is {s.LR}; it must be positive")
    _require(s.WEIGHT_DECAY >= 0, f"config key SOLVER.WEIGHT_DECAY is {s.WEIGHT_DECAY}; it must be >= 0")
    _require(0 <= s.MOMENTUM < 1, f"config key SOLVER.MOMENTUM is {s.MOMENTUM}; it must be in [0, 1)")
    _require(0 < s.LR_DECAY_RATE <= 1, f"config key SOLVER.LR_DECAY_RATE is {s.LR_DECAY_RATE}; it must be in (0, 1]")
    _require(all(isinstance(e, int) and e >= 1 for e in s.LR_DECAY_STAGES),
             f"config key SOLVER.LR_DECAY_STAGES is {list(s.LR_DECAY_STAGES)}; use positive whole epochs")
    _require(s.WARMUP_EPOCHS >= 0, f"config key SOLVER.WARMUP_EPOCHS is {s.WARMUP_EPOCHS}; it must be >= 0")
    d = cfg.DATASET
    for key in ("NUM_WORKERS", "TRAIN_SUBSET", "TEST_SUBSET", "NUM_CLASSES", "IMAGE_SIZE"):
        _require(d[key] >= 0, f"config key DATASET.{key} is {d[key]}; it must be >= 0")
    _require(d.NUM_WORKERS <= MAX_NUM_WORKERS,
             f"config key DATASET.NUM_WORKERS is {d.NUM_WORKERS}; use at most {MAX_NUM_WORKERS} loader processes")
    _require(cfg.LOG.SAVE_CHECKPOINT_FREQ >= 1,
             f"config key LOG.SAVE_CHECKPOINT_FREQ is {cfg.LOG.SAVE_CHECKPOINT_FREQ}; it must be at least 1")
    _require(cfg.LOG.TENSORBOARD_FREQ >= 1,
             f"config key LOG.TENSORBOARD_FREQ is {cfg.LOG.TENSORBOARD_FREQ}; it must be at least 1")
    _require(cfg.DATASET.VIEWS in ("auto", "fewest", 1, 2),
             f"config key DATASET.VIEWS is {cfg.DATASET.VIEWS}; use auto, fewest, 1 or 2")
    chunk = cfg.DISTILLER.TEACHER_CHUNK
    _require(chunk == "auto" or chunk >= 0, f"config key DISTILLER.TEACHER_CHUNK is {chunk}; use auto, 0 or a batch size")
    _require(cfg.DISTILLER.TEACHER_CACHE.strip() != "", "config key DISTILLER.TEACHER_CACHE is empty; use off, on "
             "or the folder that holds teacher caches")
    _require(all(isinstance(n, str) for n in cfg.DISTILLER.STACK),
             f"config key DISTILLER.STACK is {list(cfg.DISTILLER.STACK)}; list distiller names, e.g. [REVIEWKD]")
    validate_run_names(cfg)


def path_component_problem(value):
    """Why `value` cannot be one folder name of a path (None when it can): run folders are
    <LOG.PREFIX>/<PROJECT>/<NAME or TAG>, each part one folder inside the one before."""
    if not isinstance(value, str) or not value:
        return "it is empty"
    if value in (".", ".."):
        return f"{value!r} names no folder of its own"
    seps = {"/", os.sep, os.altsep or "/", "\0"}
    if any(sep in value for sep in seps):
        return "it holds a path separator (it must be one folder name, not a path)"
    return None


def validate_run_names(cfg):
    """EXPERIMENT.PROJECT, and NAME (or TAG when NAME is empty), are one folder name each."""
    exp = cfg.EXPERIMENT
    keys = [("PROJECT", exp.PROJECT), ("NAME", exp.NAME) if exp.NAME else ("TAG", exp.TAG)]
    for key, value in keys:
        why = path_component_problem(value)
        _require(why is None, f"config key EXPERIMENT.{key} is {value!r}: {why}; use a plain folder name such "
                              f"as {'my_project' if key == 'PROJECT' else 'my_run'}")


def run_name(cfg):
    """mdistiller's run folder name: EXPERIMENT.NAME, or TAG when NAME is empty."""
    return cfg.EXPERIMENT.NAME if cfg.EXPERIMENT.NAME else cfg.EXPERIMENT.TAG


class _PlainDumper(yaml.SafeDumper):
    """No `&id001` anchors: equal default tuples (FITNET/VID.INPUT_SIZE) are one object."""

    def ignore_aliases(self, data):
        return True


def _plain(node):
    if isinstance(node, CN):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, tuple):
        return list(node)
    return node


def dump_cfg(cfg):
    """The resolved config as YAML text (saved beside the outputs; loads back with load_cfg)."""
    return yaml.dump(_plain(cfg), Dumper=_PlainDumper, default_flow_style=None, sort_keys=False)
