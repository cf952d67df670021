r"""Trains the instance masker that predicts masks for photos that have none (translate.py --masks auto).

    python experiments/train_masker.py --workdir runs/shapes_masker
    python experiments/train_masker.py --workdir runs/mine_masker \
        --config.dataset=folder --config.dataroot=datasets/mine

Re-running the same command resumes from the workdir's latest checkpoint. TensorBoard:
``tensorboard --logdir runs`` (losses, and photo | true masks | predicted masks).
"""

from absl import app, flags
from ml_collections import config_flags

from instagan_jax import cli, masker_train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints and TensorBoard events.", required=True)
config_flags.DEFINE_config_file("config", "experiments/configs/masker.py", "Masker configuration.", lock_config=True)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    cli.train_or_exit(masker_train.train_masker, FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    cli.run(main)
