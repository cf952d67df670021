"""Helpers shared by several test modules (fixtures live in conftest.py)."""

import contextlib
import importlib.util
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running(cmd, log_path, **popen_kwargs):
    """A subprocess of cmd in the repository, stdout and stderr to ``log_path``; killed on the
    way out, so a failed test leaves nothing behind (a stalled 100000-step training run kept
    training for hours beside the suite)."""
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, **popen_kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


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


def diverging_from(step: int, monkeypatch) -> None:
    """Makes training_data.build_data's batches NaN from the given step on, as a diverged run's
    would be: what both training loops must stop at before saving."""
    import numpy as np

    from instagan_jax import training_data

    build_data = training_data.build_data

    def diverging(config, workdir):
        batches, held_out = build_data(config, workdir)

        def poisoned(position):
            for at, batch in enumerate(batches(position), start=position // config.batch_size + 1):
                yield {**batch, "image_A": np.full_like(batch["image_A"], np.nan)} if at >= step else batch

        return poisoned, held_out

    monkeypatch.setattr(training_data, "build_data", diverging)


# The layers whose output no instance norm follows: the generators' output convolutions, the
# discriminators' first and last (their biases' gradients are real; the others' cancel).
UNNORMALISED = {("decoder_img", "conv_out"), ("decoder_seg", "conv_out"), ("features_img", "conv_0"),
                ("features_seg", "conv_0"), ("classifier", "conv_1")}  # fmt: skip


def normalised_bias(path: list[str]) -> bool:
    """Is the tensor at ``path`` (keys down to 'bias' or 'kernel') a bias that an instance norm
    follows? Its gradient is rounding noise: its updates go either way, by up to lr each."""
    return path[-1] == "bias" and tuple(path[-3:-1]) not in UNNORMALISED
