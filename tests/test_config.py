"""The config tree: official YAMLs merge unchanged; bad input gives one-line errors."""
import glob
import os

import pytest
import yaml

from mdistiller.config import dump_cfg, get_cfg_defaults, load_cfg, merge_opts, run_name
from mdistiller.errors import ConfigError

HERE = os.path.dirname(__file__)
OFFICIAL = sorted(glob.glob(os.path.join(HERE, "fixtures", "official_configs", "*.yaml")))
REPO = os.path.dirname(HERE)


def _is_training_config(path):
    """Benchmark matrix specs (lowercase keys: project, methods, ...) live beside the configs."""
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    return "methods" not in data


OURS = [p for p in sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
        if _is_training_config(p)]


@pytest.mark.parametrize("path", OFFICIAL, ids=os.path.basename)
def test_official_style_configs_merge(path):
    cfg = load_cfg(path)
    assert cfg.is_frozen()


@pytest.mark.parametrize("path", OURS, ids=lambda p: os.path.relpath(p, REPO))
def test_shipped_configs_merge(path):
    load_cfg(path)


def test_official_values_arrive():
    cfg = load_cfg(os.path.join(HERE, "fixtures", "official_configs", "mlkd_imagenet.yaml"))
    assert cfg.DISTILLER.TYPE == "MLKD"
    assert cfg.KD.TEMPERATURE == 1.0 and isinstance(cfg.KD.TEMPERATURE, float)  # YAML int -> float key
    assert cfg.SOLVER.LR_DECAY_STAGES == [30, 60, 90]
    assert cfg.DATASET.TEST.BATCH_SIZE == 128
    cfg = load_cfg(os.path.join(HERE, "fixtures", "official_configs", "mdistiller_feature_methods.yaml"))
    assert cfg.FITNET.INPUT_SIZE == (32, 32)  # list in YAML, tuple default: converted
    assert cfg.CRD.MODE == "relax"


def test_defaults_have_every_mdistiller_node():
    cfg = get_cfg_defaults()
    for node in ("EXPERIMENT", "DATASET", "DISTILLER", "SOLVER", "LOG", "KD", "AT", "RKD", "FITNET", "KDSVD",
                 "OFD", "NST", "PKT", "SP", "VID", "CRD", "REVIEWKD", "DKD", "SLD", "MLKD"):
        assert node in cfg
    assert cfg.SLD.TEMPERATURES == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert cfg.SLD.GAMMA == 150 and cfg.SLD.DETACH_PSEUDO_TEACHER is False


def test_opts_override_and_parse_literals():
    cfg = load_cfg(None, ["SOLVER.EPOCHS", "3", "SOLVER.LR", "0.1", "DISTILLER.STACK", "[REVIEWKD]",
                          "EXPERIMENT.TAG", "a,b", "SLD.TEACHER_SWAP", "False"])
    assert cfg.SOLVER.EPOCHS == 3 and cfg.SOLVER.LR == 0.1
    assert cfg.DISTILLER.STACK == ["REVIEWKD"]
    assert cfg.EXPERIMENT.TAG == "a,b"
    assert cfg.SLD.TEACHER_SWAP is False
    assert run_name(cfg) == "a,b"


def _message(excinfo):
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("SOLVER:\n  EPOCH: 3\n")
    with pytest.raises(ConfigError) as e:
        load_cfg(str(p))
    msg = _message(e)
    assert "SOLVER.EPOCH" in msg and "EPOCHS" in msg


def test_unknown_section_is_named():
    with pytest.raises(ConfigError) as e:
        load_cfg(None, ["FOO.BAR", "1"])
    assert "FOO" in _message(e)


def test_wrong_type_is_named():
    with pytest.raises(ConfigError) as e:
        load_cfg(None, ["SOLVER.EPOCHS", "many"])
    msg = _message(e)
    assert "SOLVER.EPOCHS" in msg and "int" in msg and "many" in msg
    with pytest.raises(ConfigError) as e:
        load_cfg(None, ["SLD.GAMMA", "150.5"])
    assert "SLD.GAMMA" in _message(e)
    with pytest.raises(ConfigError):
        load_cfg(None, ["LOG.QUIET", "1"])  # ints are not booleans


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ConfigError) as e:
        load_cfg(None, ["SOLVER.TRAINER", "fancy"])
    msg = _message(e)
    assert "fancy" in msg and "ours" in msg and "crd" in msg
    with pytest.raises(ConfigError) as e:
        load_cfg(None, ["DEVICE", "tpu"])
    assert "DEVICE" in _message(e)
    load_cfg(None, ["DEVICE", "cuda:1"])


@pytest.mark.parametrize("key,value", [("SOLVER.EPOCHS", "0"), ("SOLVER.LR", "-0.1"), ("SOLVER.MOMENTUM", "1.5"),
                                       ("DATASET.TRAIN_SUBSET", "-1"), ("SEED", "-3"), ("SOLVER.LR_DECAY_STAGES", "[0, 10]")])
def test_out_of_range_values(key, value):
    with pytest.raises(ConfigError) as e:
        load_cfg(None, [key, value])
    assert key in _message(e)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_cfg(str(tmp_path / "missing.yaml"))
    assert "missing.yaml" in _message(e)
    p = tmp_path / "broken.yaml"
    p.write_text("SOLVER:\n  EPOCHS: [1,\n")
    with pytest.raises(ConfigError) as e:
        load_cfg(str(p))
    assert "broken.yaml" in _message(e)
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError):
        load_cfg(str(p))


def test_odd_number_of_opts():
    cfg = get_cfg_defaults()
    with pytest.raises(ConfigError) as e:
        merge_opts(cfg, ["SOLVER.EPOCHS"])
    assert "SOLVER.EPOCHS" in _message(e)


def test_float_keys_accept_exponent_strings(tmp_path):
    cfg = load_cfg(None, ["SOLVER.LR", "1e-3"])
    assert cfg.SOLVER.LR == 1e-3
    p = tmp_path / "exp.yaml"
    p.write_text("SOLVER:\n  WEIGHT_DECAY: 5e-4\n")
    assert load_cfg(str(p)).SOLVER.WEIGHT_DECAY == 5e-4
    with pytest.raises(ConfigError):
        load_cfg(None, ["SOLVER.LR", "fast"])


def test_dump_round_trips_without_anchors(tmp_path):
    cfg = load_cfg(None, ["SOLVER.EPOCHS", "7", "DISTILLER.STACK", "[AT]"])
    text = dump_cfg(cfg)
    assert "&id" not in text and "*id" not in text
    p = tmp_path / "resolved.yaml"
    p.write_text(text)
    again = load_cfg(str(p))
    assert again == cfg
