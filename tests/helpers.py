"""Helpers shared by several test modules (fixtures live in conftest.py)."""

import importlib.util
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def tiny_config(tmp_path, **overrides):
    """experiments/configs/tiny.py with its tfds data under tmp_path and the given keys changed."""
    sys.path.insert(0, str(REPO / "experiments"))
    try:
        spec = importlib.util.spec_from_file_location("tiny_config", REPO / "experiments" / "configs" / "tiny.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    config = module.get_config()
    config.data_dir = str(tmp_path / "tfds")
    for key, value in overrides.items():
        config[key] = value
    return config
