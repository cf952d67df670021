"""experiments/shapes_study.py's runs train what its reports say they train."""

import importlib.util

import pytest
from absl import flags
from helpers import REPO, shipped_config
from ml_collections import config_flags

PINNED_BY_DEFAULT = {"ins_per": 2, "n_layers_d": 3, "ngf_mask": 0, "mask_decoder_width": 0, "binary_masks": False}


@pytest.fixture(scope="module")
def study():
    """The script as a module; its ``defined_flags`` are the flags its import defined."""
    spec = importlib.util.spec_from_file_location("shapes_study", REPO / "experiments" / "shapes_study.py")
    module = importlib.util.module_from_spec(spec)
    before = set(flags.FLAGS)
    spec.loader.exec_module(module)
    module.defined_flags = set(flags.FLAGS) - before
    yield module
    module.FLAGS.unparse_flags()


def parse(study, *argv):
    study.FLAGS.unparse_flags()
    study.FLAGS(["shapes_study.py", *argv])


def trained_config(study, variant: str):
    """The config train.py resolves from the command line the study gives a run of ``variant``."""
    args = study.train_args("/runs/x", "squares", study.VARIANTS[variant][1], seed=1, steps=40, every=10)
    assert args[0].endswith("train.py")
    config_args = [a for a in args[1:] if a.startswith("--config")]
    assert len(config_args) == len(args) - 2  # everything but --workdir sets the config
    argv = ["train.py", *config_args]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", flag_values=values, sys_argv=argv)  # as train.py defines it
    values(argv)
    return values.config


def test_runs_train_the_reports_settings_unless_the_flags_say_otherwise(study, tmp_path):
    """The reports' rows (the paper's chunks, discriminators and mask path, soft masks) hold
    whatever default.py has since become; the flags give default.py's budget back."""
    parse(study, f"--root={tmp_path}")
    config = trained_config(study, "insta_gan")
    assert {key: config[key] for key in PINNED_BY_DEFAULT} == PINNED_BY_DEFAULT
    assert (config.seed, config.num_train_steps, config.niter, config.niter_decay) == (1, 40, 20, 20)
    assert config.data_dir == str(tmp_path / "tfds_data")

    parse(study, f"--root={tmp_path}", "--ins_per=4", "--n_layers_d=2", "--ngf_mask=8", "--binary_masks")
    default = shipped_config("default")
    config = trained_config(study, "insta_gan")
    assert {key: config[key] for key in PINNED_BY_DEFAULT} == {key: default[key] for key in PINNED_BY_DEFAULT}


def test_a_variants_own_settings_win_over_the_pinned_flags(study, tmp_path):
    parse(study, f"--root={tmp_path}", "--binary_masks")
    paper = trained_config(study, "insta_gan_paper")
    assert (paper.binary_masks, paper.upsample, paper.ema_decay, paper.learning_rate) == (False, "transpose", 0, 2e-4)
    parse(study, f"--root={tmp_path}")
    assert trained_config(study, "binary_masks").binary_masks
    assert trained_config(study, "d_two_layers").n_layers_d == 2


def test_the_reports_command_regenerates_the_same_flags(study, tmp_path):
    argv = [f"--root={tmp_path}", "--tasks=bars", "--variants=insta_gan,cycle_gan", "--steps=60", "--ngf_mask=8"]
    parse(study, *argv, "--out=bars.md", "--binary_masks")
    command = study.study_command()
    assert command.startswith("python experiments/shapes_study.py ")
    expected = {name: study.FLAGS[name].value for name in study.defined_flags}
    assert {"root", "tasks", "steps", "binary_masks", "ngf_mask"} <= set(expected)
    parse(study, *command.split()[2:])
    assert {name: study.FLAGS[name].value for name in expected} == expected
    assert (study.FLAGS.binary_masks, study.FLAGS.ngf_mask, study.FLAGS.tasks) == (True, 8, ["bars"])
