"""Helpers shared by several test modules (fixtures live in conftest.py)."""

import importlib.util
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def shipped_config(name: str):
    """experiments/configs/{name}.py's config, loaded as train.py's --config loads it."""
    sys.path.insert(0, str(REPO / "experiments"))
    try:
        path = REPO / "experiments" / "configs" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{name}_config", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module.get_config()


def tiny_config(tmp_path, **overrides):
    """experiments/configs/tiny.py with its tfds data under tmp_path and the given keys changed."""
    config = shipped_config("tiny")
    config.data_dir = str(tmp_path / "tfds")
    for key, value in overrides.items():
        config[key] = value
    return config


def masker_config(tmp_path, **overrides):
    """experiments/configs/tiny.py's data with a tiny masker (width 4, one block, 4 slots)."""
    config = tiny_config(tmp_path, ins_max=4, batch_size=2, checkpoint_every_steps=2, **overrides)
    config.masker = {"width": 4, "n_blocks": 1, "ins_max": 4, "sigma": 2.0, "centre_threshold": 0.2, "peak_window": 5}
    return config
