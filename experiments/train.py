r"""Trains InstaGAN (or the CycleGAN baseline).

    python experiments/train.py --workdir runs/shapes                      # shapes, no data needed
    python experiments/train.py --workdir runs/shp2gir --config experiments/configs/shp2gir_coco.py \
        --config.dataroot=datasets/shp2gir_coco --config.batch_size=8

Re-running the same command resumes from the workdir's latest checkpoint. TensorBoard:
``tensorboard --logdir runs``.
"""

import logging as pylogging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from instagan_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and the config.", required=True)
config_flags.DEFINE_config_file(
    "config", "experiments/configs/default.py", "Training configuration file.", lock_config=True
)


class _QuietOrbax:
    """Keeps orbax's per-save INFO chatter out of the training log (warnings still show)."""

    def filter(self, record):
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def main(argv):
    pylogging.getLogger("absl").addFilter(_QuietOrbax())
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.info("config:\n%s", FLAGS.config)
    try:
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except train.StopRequested as stop:
        logging.warning("stopped by %s after saving a checkpoint", stop)
        sys.exit(130 if stop.signum == 2 else 0)
    except (train.TrainingError, ValueError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
