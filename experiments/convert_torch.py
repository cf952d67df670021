r"""Converts the authors' PyTorch InstaGAN checkpoints into an instagan-jax workdir.

    python experiments/convert_torch.py --checkpoint_dir checkpoints/shp2gir_coco_instagan \
        --epoch latest --workdir runs/shp2gir_converted

Reads {epoch}_net_G_A.pth, {epoch}_net_G_B.pth and, where present, the discriminators;
PyTorch need not be installed. The workdir then serves translate.py and fine-tuning.
"""

import os

from absl import app, flags, logging

from instagan_jax import checkpoint, checks, cli
from instagan_jax.torch_import import convert_checkpoint_dir

flags.DEFINE_string("checkpoint_dir", None, "Folder with the authors' {epoch}_net_*.pth files.", required=True)
flags.DEFINE_string("epoch", "latest", "Which epoch's files to read ('latest', '200', ...).")
flags.DEFINE_string("workdir", None, "Output workdir (checkpoint step 0 is written there).", required=True)
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    checks.writable_folder(FLAGS.workdir, "--workdir")
    existing = checkpoint.checkpoint_dir(FLAGS.workdir)
    if os.path.isdir(existing) and os.listdir(existing):
        raise checks.InputError(
            f"--workdir {FLAGS.workdir} already holds checkpoints ({existing}); convert into a new workdir"
        )
    spec, networks = convert_checkpoint_dir(FLAGS.checkpoint_dir, FLAGS.epoch)
    checkpoint.save_networks(FLAGS.workdir, spec, networks, step=0)
    logging.info("converted %s (%s) into %s", sorted(networks), spec, checkpoint.checkpoint_dir(FLAGS.workdir))
    print(f"Converted {', '.join(sorted(networks))} ({spec}) -> {checkpoint.checkpoint_dir(FLAGS.workdir)}/0")


if __name__ == "__main__":
    cli.run(main)
