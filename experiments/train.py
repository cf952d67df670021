r"""Trains InstaGAN (or the CycleGAN baseline).

    python experiments/train.py --workdir runs/shapes                      # shapes, no data needed
    python experiments/train.py --workdir runs/shp2gir --config experiments/configs/shp2gir_coco.py \
        --config.dataroot=datasets/shp2gir_coco --config.batch_size=8

Re-running the same command resumes from the workdir's latest checkpoint. TensorBoard:
``tensorboard --logdir runs``.

Several hosts: run the same command on each, with --coordinator_address, --num_processes and
--process_id, or under a cluster launcher JAX recognises (SLURM srun, mpirun, multi-host
Cloud TPU), which sets them; see docs/scale_out.md.
"""

import logging as pylogging

from absl import app, flags
from ml_collections import config_flags

from instagan_jax import cli, parallel, train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard events and the config.", required=True)
flags.DEFINE_string("coordinator_address", "", "HOST:PORT of process 0, for a multi-process run.")
flags.DEFINE_integer("num_processes", 0, "Processes of a multi-process run (0: single, or from the cluster).")
flags.DEFINE_integer("process_id", -1, "This process's index in [0, num_processes).")
config_flags.DEFINE_config_file(
    "config", "experiments/configs/default.py", "Training configuration file.", lock_config=True
)


class _QuietOrbax:
    """Keeps orbax's per-save INFO chatter out of the training log (warnings still show)."""

    def filter(self, record):
        return record.levelno >= pylogging.WARNING or "orbax" not in record.pathname


def main(argv):
    pylogging.getLogger("absl").addFilter(_QuietOrbax())
    cli.enable_compilation_cache()
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        parallel.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    cli.train_or_exit(train.train, FLAGS.config, FLAGS.workdir, errors=(train.TrainingError,))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
