"""train.train end to end on the tiny config: checkpoints, resume, refusals, NaN, fine-tuning."""

import glob
import os

import chex
import jax
import numpy as np
import pytest
from helpers import diverging_from, shipped_config, tiny_config

from instagan_jax import checkpoint, divergence, train, training_config
from instagan_jax.inference import Translator


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")


def params_of(state):
    return jax.tree.map(np.asarray, state.params)


def test_train_writes_checkpoints_events_and_a_usable_model(data_dir):
    workdir = str(data_dir / "run")
    state = train.train(tiny_config(data_dir), workdir)
    assert int(state.step) == 4
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "4"]
    assert glob.glob(os.path.join(workdir, "events.out.tfevents.*"))
    assert os.path.isfile(os.path.join(workdir, "config.json"))
    translator = Translator.from_workdir(workdir, ins_per=2, ins_max=4)
    assert translator.binary_masks  # as the run read its masks (tiny.py keeps default.py's)
    out = translator.translate(np.zeros((32, 32, 3), np.float32), [np.pad(np.ones((8, 8)), 12, constant_values=-1)])
    assert np.isfinite(out["image"]).all() and out["masks"].shape == (32, 32, 4)
    # a second call with the same target does nothing: the run is complete
    assert int(train.train(tiny_config(data_dir), workdir).step) == 4


def test_resume_continues_exactly_like_an_uninterrupted_run(data_dir):
    """Also: a generator average turned on at the resume starts from the restored generators,
    is saved beside them and is what translation uses (it never changes the training itself)."""
    straight = train.train(tiny_config(data_dir), str(data_dir / "run"))  # the first test's run, or trained here
    resumed_dir = str(data_dir / "resumed")
    train.train(tiny_config(data_dir, num_train_steps=2), resumed_dir)
    assert not checkpoint.has_ema(resumed_dir, 2)
    resumed = train.train(tiny_config(data_dir, ema_decay=0.9), resumed_dir)
    assert int(resumed.step) == 4
    for a, b in zip(jax.tree.leaves(params_of(straight)), jax.tree.leaves(params_of(resumed)), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(straight.pools["fake_B"].images, resumed.pools["fake_B"].images)

    assert checkpoint.has_ema(resumed_dir, 4)
    averaged = Translator.from_workdir(resumed_dir, ins_per=2, ins_max=4).generators
    trained = Translator.from_workdir(resumed_dir, averaged=False, ins_per=2, ins_max=4).generators
    for name in ("G_A", "G_B"):
        chex.assert_trees_all_equal(averaged[name]["params"], jax.device_get(resumed.ema[name]))
        chex.assert_trees_all_equal(trained[name]["params"], jax.device_get(resumed.params[name]))
    assert not np.allclose(jax.tree.leaves(averaged["G_A"])[0], jax.tree.leaves(trained["G_A"])[0])


def test_resume_of_a_config_stored_before_a_key_existed_compares_the_value_it_was_made_with(tmp_path):
    """Checkpoints of former defaults stored no n_layers_d (they have three layers, not today's
    two), no ngf_mask and no mask_decoder_width (their mask paths are as wide as the paper's:
    0, not tiny's 1 and 2), and no binary_masks (they read soft masks)."""
    config = tiny_config(tmp_path)
    added = ("n_layers_d", "shapes_task", "ngf_mask", "mask_decoder_width", "binary_masks")
    older = {k: v for k, v in config.to_dict().items() if k not in added}
    changes = r"ngf_mask: 0 -> 1, mask_decoder_width: 0 -> 2, n_layers_d: 3 -> 2, binary_masks: False -> True"
    with pytest.raises(training_config.IncompatibleResume, match=changes):
        training_config.check_resume_compatible(config, older)
    config.n_layers_d, config.binary_masks = 3, False
    with pytest.raises(training_config.IncompatibleResume, match=r"\(ngf_mask: 0 -> 1, mask_decoder_width: 0 -> 2\)"):
        training_config.check_resume_compatible(config, older)
    config.ngf_mask, config.mask_decoder_width = 0, 0
    training_config.check_resume_compatible(config, older)  # the same networks and data: resumes


def test_resume_with_a_different_model_is_refused_with_the_keys(data_dir):
    workdir = str(data_dir / "run")  # trained by the first test or created here
    if not os.path.isdir(workdir):
        train.train(tiny_config(data_dir), workdir)
    with pytest.raises(training_config.IncompatibleResume, match=r"ngf: 2 -> 4.*ins_max: 4 -> 2"):
        train.train(tiny_config(data_dir, ngf=4, ins_max=2, num_train_steps=6), workdir)
    # a change of the schedule or logging is accepted
    state = train.train(tiny_config(data_dir, num_train_steps=5, log_every_steps=1), workdir)
    assert int(state.step) == 5


@pytest.mark.parametrize("name, chunks", [("default", 1), ("tiny", 2)])
def test_shipped_shapes_configs_pass_the_checks_with_their_chunks(name, chunks):
    """The README's command (default.py: all mask slots in one chunk) passes the checks train.py
    runs first; tiny.py keeps two chunks, so the tests train the sequential mini-batch."""
    config = shipped_config(name)
    training_config.validate(config)
    assert training_config.step_config(config).num_chunks == chunks


@pytest.mark.parametrize("name", ["folder", "shp2gir_coco", "jeans2skirt_ccp", "pants2skirt_mhp"])
def test_paper_configs_keep_the_authors_networks_and_soft_masks(name):
    """default.py's levers (thresholded masks, resize upsampling, narrow mask path, average)
    stay out of the paper's configs, whose checkpoints the authors' .pth files must match."""
    config = shipped_config(name)
    assert (config.binary_masks, config.upsample, config.ngf_mask, config.ema_decay) == (False, "transpose", 0, 0)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"ins_max": 5}, "config.ins_max .5. must be a positive multiple of config.ins_per"),
        ({"fine_size": (30, 32)}, "config.fine_size: height and width must be positive multiples of 4"),
        ({"fine_size": (40, 40)}, "larger than config.load_size"),
        ({"dataset": "imagenet"}, "config.dataset must be"),
        ({"dataset": "folder", "dataroot": "/no/such/dir"}, "config.dataroot '/no/such/dir' is not a folder"),
        ({"batch_size": 0}, r"config.batch_size must be an integer in \[1, 4096\], got 0"),
        ({"ngf": -1}, r"config.ngf must be an integer in \[1, 256\]"),
        ({"max_checkpoints_to_keep": 0}, r"config.max_checkpoints_to_keep must be an integer in \[1, "),
        ({"pool_size": 0}, r"config.pool_size must be an integer in \[1, "),
        ({"shapes_num_train": 0}, r"config.shapes_num_train must be an integer in \[1, 1000000\]"),
        ({"shapes_num_train": 100_000_000}, r"config.shapes_num_train must be an integer in \[1, 1000000\]"),
        ({"ins_max": 10_000, "ins_per": 10_000}, r"config.ins_max must be an integer in \[1, 256\]"),
        ({"learning_rate": float("nan")}, r"config.learning_rate must be a number in \[0.0, 1.0\], got nan"),
        ({"lambda_a": -1.0}, r"config.lambda_a must be a number in"),
        (
            {"load_size": (40000, 40000), "fine_size": (40000, 40000)},
            r"training at fine_size \(40000, 40000\) .*needs "
            r"at least .* GiB, over the .* GiB this machine has \(--config.memory_limit_gb",
        ),
        ({"upsample": "bilinear"}, "upsample must be one of"),
        ({"n_layers_d": 0}, r"n_layers_d must be an integer in \[1, 6\]"),
        ({"ngf_mask": -8}, r"ngf_mask must be an integer in \[0, 256\], got -8"),
        ({"ema_decay": 1.5}, r"config.ema_decay must be a number in \[0.0, 1.0\)"),
        ({"shapes_task": "stars"}, "config.shapes_task must be one of"),
    ],
)
def test_hostile_configs_fail_before_compiling_naming_the_key(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        train.train(tiny_config(tmp_path, **overrides), str(tmp_path / "never"))
    assert not os.path.exists(tmp_path / "never" / "checkpoints")


def test_a_non_finite_loss_stops_training_naming_step_and_loss_and_is_never_saved(data_dir, monkeypatch):
    """Step 3 diverges (its batch is NaN): checked before its save, not at the next logged step (4)."""
    diverging_from(3, monkeypatch)
    workdir = str(data_dir / "nan")
    config = tiny_config(data_dir, checkpoint_every_steps=1, log_every_steps=4, max_checkpoints_to_keep=10)
    with pytest.raises(
        divergence.Diverged, match=r"non-finite loss \[.*'cyc_A'.*\] at step 3; the last good checkpoint is step 2 in "
    ):
        train.train(config, workdir)
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1", "2"]


def test_fine_tunes_from_a_converted_authors_checkpoint(data_dir, converted_workdir):
    paper = {"upsample": "transpose", "ema_decay": 0.0, "n_layers_d": 3, "ngf_mask": 0, "mask_decoder_width": 0}
    config = tiny_config(data_dir, ngf=4, ndf=4, n_blocks=9, num_train_steps=1, init_from=converted_workdir, **paper)
    state = train.train(config, str(data_dir / "finetune"))
    _, converted_nets = checkpoint.load_networks(converted_workdir)
    before = np.asarray(converted_nets["G_A"]["params"]["decoder_img"]["conv_out"]["kernel"])
    after = np.asarray(state.params["G_A"]["decoder_img"]["conv_out"]["kernel"])
    # one outer step (two chunk updates) away from the import: Adam moves each weight by about lr per update
    assert 0 < np.abs(after - before).max() <= 3 * config.learning_rate
    with pytest.raises(train.TrainingError, match="init_from"):
        train.train(tiny_config(data_dir, init_from=converted_workdir), str(data_dir / "mismatch"))
