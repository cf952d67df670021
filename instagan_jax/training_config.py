"""The training config (an ml_collections ConfigDict, see experiments/configs/) read in one place.

``validate`` refuses a bad config before anything is built, naming the key; ``model_spec``
and ``step_config`` derive the model and step settings from the keys of the same names;
``check_resume_compatible`` guards resuming a workdir with a changed model or data shape.
The data module reads the data keys (training_data.py), the loop its bookkeeping keys.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import ml_collections

from instagan_jax import checks
from instagan_jax import train_step as ts
from instagan_jax.checkpoint import CheckpointError
from instagan_jax.datasets import DATASETS, shapes
from instagan_jax.layers import COMPUTE_DTYPES, REMAT
from instagan_jax.models import ModelSpec

# Keys whose change makes an old checkpoint or data position meaningless.
SHAPE_KEYS = ("model", "ngf", "ngf_mask", "mask_decoder_width", "ndf", "n_blocks", "n_layers_d", "upsample",
              "ins_max", "ins_per", "fine_size", "load_size", "batch_size", "dataset", "dataroot", "shapes_task",
              "phase", "seed", "binary_masks")  # fmt: skip
# SHAPE_KEYS added after checkpoints first stored their config, with the value older ones were made with.
ADDED_SHAPE_KEYS = {"n_layers_d": 3, "shapes_task": "squares", "ngf_mask": 0, "mask_decoder_width": 0,
                    "binary_masks": False}  # fmt: skip
BIG = 10**9  # a step count no run reaches
# Integer keys and their ranges. max_checkpoints_to_keep >= 1: orbax's 0 would keep none.
INTEGER_RANGES = {
    "batch_size": (1, 4096), "ins_max": (1, checks.MAX_INSTANCES), "ins_per": (1, checks.MAX_INSTANCES),
    "ngf": (1, 256), "ndf": (1, 256), "n_blocks": (1, 64), "num_train_steps": (1, BIG),
    "checkpoint_every_steps": (1, BIG), "log_every_steps": (1, BIG), "image_every_steps": (1, BIG),
    "max_checkpoints_to_keep": (1, 10**6), "pool_size": (1, 10**4), "niter": (0, BIG), "niter_decay": (0, BIG),
    "seed": (0, 2**31 - 1), "shapes_size": (8, 1024), "shapes_num_train": (1, shapes.MAX_GENERATED),
    "shapes_num_test": (1, shapes.MAX_GENERATED), "shapes_max_instances": (1, checks.MAX_INSTANCES),
}  # fmt: skip
CHOICES = {"set_order": ("decreasing", "random"), "gan_loss": ("lsgan", "vanilla"), "compute_dtype": COMPUTE_DTYPES,
           "remat": REMAT}  # fmt: skip
# Float keys: (lowest, highest, highest included).
NUMBER_RANGES = {
    "learning_rate": (0.0, 1.0, True), "beta1": (0.0, 1.0, False), "ema_decay": (0.0, 1.0, False),
    "lambda_a": (0.0, 1e6, True), "lambda_b": (0.0, 1e6, True), "lambda_idt": (0.0, 1e6, True),
    "lambda_ctx": (0.0, 1e6, True), "memory_limit_gb": (0.0, 1e6, True),
}  # fmt: skip


class IncompatibleResume(ValueError):
    """The workdir's checkpoints were trained with another model or data shape."""


def _fields_from(cls, config, **given):
    names = {f.name for f in dataclasses.fields(cls)} - set(given)
    return cls(**given, **{name: config[name] for name in names if name in config})


def shapes_task(config) -> str:
    """config.shapes_task; configs stored before the bars task have none, and meant "squares"."""
    return config.get("shapes_task", ADDED_SHAPE_KEYS["shapes_task"])


def binary_masks(config) -> bool:
    """config.binary_masks; configs stored before it have none, and read soft masks (a stored
    non-boolean, as a hostile config.json could hold, is not True either)."""
    return config.get("binary_masks", ADDED_SHAPE_KEYS["binary_masks"]) is True


def model_spec(config) -> ModelSpec:
    """The networks the config asks for (config.model, ngf, ndf, n_blocks)."""
    return _fields_from(ModelSpec, config)


def step_config(config) -> ts.StepConfig:
    """The step's settings: every StepConfig field the config sets (ins_max, lambda_a, ...)."""
    return _fields_from(ts.StepConfig, config, spec=model_spec(config))


def _check_number(config, key: str, lowest, highest, integer: bool = False, closed: bool = True) -> None:
    """config[key] is a finite number in [lowest, highest] (``closed`` False: below highest)."""
    if key not in config:
        return
    value = config[key]
    kinds = (int,) if integer else (int, float)
    inside = type(value) in kinds and math.isfinite(value) and lowest <= value
    inside = inside and (value <= highest if closed else value < highest)
    if not inside:
        bracket = "]" if closed else ")"
        kind = "an integer" if integer else "a number"
        raise checks.InputError(f"config.{key} must be {kind} in [{lowest}, {highest}{bracket}, got {value!r}")


def validate(config, for_training: bool = True) -> None:
    """Refuses a hostile config before anything is built or compiled, naming the key.

    ``for_training`` False leaves out what only a training run needs (the devices it divides
    the batch over, the memory its image pools take): for a config read back from a checkpoint.
    """
    for key, (lowest, highest) in INTEGER_RANGES.items():
        _check_number(config, key, lowest, highest, integer=True)
    for key, (lowest, highest, closed) in NUMBER_RANGES.items():
        _check_number(config, key, lowest, highest, closed=closed)
    checks.check_chunking(config.ins_max, config.ins_per, ("config.ins_max", "config.ins_per"))
    for key in ("load_size", "fine_size"):
        size = tuple(config[key])
        if len(size) != 2:
            raise ValueError(f"config.{key} must be (H, W), got {config[key]!r}")
        checks.check_image_size(*size, what=f"config.{key}")
    if any(fine > load for fine, load in zip(config.fine_size, config.load_size, strict=True)):
        raise ValueError(
            f"config.fine_size {tuple(config.fine_size)} is larger than config.load_size {tuple(config.load_size)}"
        )
    for key, choices in CHOICES.items():
        if key in config and config[key] not in choices:
            raise checks.InputError(f"config.{key} must be one of {choices}, got {config[key]!r}")
    if config.dataset not in DATASETS:
        raise ValueError(f"config.dataset must be one of {DATASETS}, got {config.dataset!r}")
    if shapes_task(config) not in shapes.TASKS:
        raise ValueError(f"config.shapes_task must be one of {shapes.TASKS}, got {config.shapes_task!r}")
    if config.dataset != "shapes" and not os.path.isdir(config.dataroot):
        raise ValueError(f"config.dataroot {config.dataroot!r} is not a folder (needed by dataset {config.dataset!r})")
    step_config(config)  # the model and step settings check themselves
    if not for_training:
        return
    if tuple(config.mesh_shape) not in ((-1,), (jax.device_count(),)):
        raise ValueError(
            f"config.mesh_shape {tuple(config.mesh_shape)} must be (-1,) or ({jax.device_count()},): "
            "the data axis spans all devices"
        )
    if config.batch_size % jax.device_count():
        raise ValueError(
            f"config.batch_size ({config.batch_size}) must be divisible by the {jax.device_count()} devices"
        )
    checks.check_memory(
        training_bytes(config), f"training at fine_size {tuple(config.fine_size)} with ins_max {config.ins_max}",
        config.get("memory_limit_gb", 0), raise_with="--config.memory_limit_gb",
    )  # fmt: skip


def training_bytes(config) -> int:
    """A lower bound of the memory a run holds: two image pools of pool_size fakes, and per example of
    a batch its inputs at load_size and one generator feature map per layer at fine_size."""
    (fh, fw), (lh, lw) = config.fine_size, config.load_size
    channels = 3 + config.ins_max
    pools = 2 * config.pool_size * fh * fw * channels * 4
    inputs = 2 * config.batch_size * lh * lw * channels * 4
    features = config.batch_size * fh * fw * config.ngf * 4 * (2 * config.n_blocks + 6)
    return pools + inputs + features


def stored(config: dict, where: str):
    """A config read back from a checkpoint (``where``), as a ConfigDict checked as validate does:
    a hand-edited or damaged one ends in a CheckpointError naming the folder and the key."""
    try:
        checked = ml_collections.ConfigDict(config)
        validate(checked, for_training=False)
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: its config cannot be used ({type(e).__name__}: {e})") from None
    return checked


def _norm(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def check_resume_compatible(config, saved: dict) -> None:
    """Refuses to resume from checkpoints whose stored config differs in a SHAPE_KEYS key."""
    saved = {**ADDED_SHAPE_KEYS, **saved}
    changed = {k: (saved.get(k), config[k]) for k in SHAPE_KEYS if k in saved and _norm(saved[k]) != _norm(config[k])}
    if changed and not config.allow_config_change:
        listing = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise IncompatibleResume(
            f"the workdir's checkpoints were trained with a different model or data shape ({listing}); "
            "use a new --workdir, or pass --config.allow_config_change=True to resume anyway"
        )
