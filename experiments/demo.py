r"""A local web page to try a trained model: paint or predict instance masks, translate, download.

    python experiments/demo.py --workdir runs/shapes --masker_workdir runs/shapes_masker

Serves on 127.0.0.1 (--port, by default a free one; the URL is printed at start) and needs no
internet: no CDN fonts, no analytics. Needs the demo extra: pip install -e '.[demo]'.
"""

import socket
import tempfile

from absl import app, flags

from instagan_jax import checks, cli, demo
from instagan_jax.inference import Translator
from instagan_jax.mask_prediction import MaskPredictor

flags.DEFINE_string("workdir", None, "Workdir with the generators (trained or converted).", required=True)
flags.DEFINE_string("masker_workdir", None, "Workdir of experiments/train_masker.py, for “Predict masks”.")
flags.DEFINE_integer("port", 0, "Port on 127.0.0.1; 0 picks a free one.", lower_bound=0, upper_bound=65535)
flags.DEFINE_integer("ins_per", 2, "Instances per sequential chunk.", lower_bound=1)
flags.DEFINE_integer("ins_max", 8, "Instances translated at most (largest first).", lower_bound=1,
                     upper_bound=checks.MAX_INSTANCES)  # fmt: skip
FLAGS = flags.FLAGS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    translator = Translator.from_workdir(FLAGS.workdir, ins_per=FLAGS.ins_per, ins_max=FLAGS.ins_max)
    masker = MaskPredictor.from_workdir(FLAGS.masker_workdir) if FLAGS.masker_workdir else None
    examples = tempfile.mkdtemp(prefix="instagan_demo_examples_")
    port = FLAGS.port or free_port()
    print(f"instagan-jax demo: http://127.0.0.1:{port}", flush=True)
    demo.serve(demo.build(translator, masker, examples), port, examples)


if __name__ == "__main__":
    cli.run(main)
