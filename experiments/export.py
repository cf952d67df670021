r"""Exports a workdir's translator (and a masker) as programs that run without this package.

    python experiments/export.py --workdir runs/shapes --direction AtoB --height 32 --width 32 \
        --ins_max 4 --output translator_AtoB.zip
    python experiments/export.py --masker_workdir runs/shapes_masker --height 32 --width 32 --output masker.zip

Writes a jax.export program file (instagan_jax/export.py: the serialized StableHLO program
with its weights, and metadata.json): float32 NHWC in [-1, 1], photos (and a translator's
ins_max masks, in any order, empty slots -1) in, translated photos and masks out. --batch 0
(default) leaves the batch dimension free. Run one with only JAX installed:

    import zipfile, jax
    program = jax.export.deserialize(bytearray(zipfile.ZipFile("translator_AtoB.zip").read("program.bin")))
    images, masks = program.call(images, masks)

--format onnx writes an ONNX model instead: a translator (inputs "images" and "masks",
outputs "translated" and "translated_masks") or a masker at --masker_scale 1 (input "images",
output "masks"); experiments/serve_onnx.py runs them with onnxruntime alone.
"""

from absl import app, flags

from instagan_jax import checkpoint, checks, cli, domains, export
from instagan_jax.inference import Translator
from instagan_jax.json_files import write_whole
from instagan_jax.mask_prediction import MaskPredictor

flags.DEFINE_string("workdir", None, "Workdir of the translator to export (trained or converted).")
flags.DEFINE_string("masker_workdir", None, "Workdir of a masker (experiments/train_masker.py) to export instead.")
flags.DEFINE_integer("step", None, "Checkpoint step; the latest if unset.", lower_bound=0)
flags.DEFINE_enum("direction", "AtoB", list(domains.DIRECTIONS), "The translator's direction.")
flags.DEFINE_integer("height", None, "Photo height (a multiple of 4).", required=True, lower_bound=4)
flags.DEFINE_integer("width", None, "Photo width (a multiple of 4).", required=True, lower_bound=4)
flags.DEFINE_integer("ins_max", 4, "Instance masks the translator takes.", lower_bound=1,
                     upper_bound=checks.MAX_INSTANCES)  # fmt: skip
flags.DEFINE_integer("ins_per", 2, "Instances per sequential chunk.", lower_bound=1)
flags.DEFINE_integer("batch", 0, "Photos per call; 0: any number.", lower_bound=0)
flags.DEFINE_string("masker_scale", "1", "The masker's fixed scale (MaskPredictor's scale; auto cannot be exported).")
flags.DEFINE_enum("format", "jax", ["jax", "onnx"], "jax: a jax.export program file (.zip); onnx: an ONNX model "
                  "(.onnx; a masker at scale 1 only; needs the export extra).")  # fmt: skip
flags.DEFINE_string("output", None, "The file to write (.zip for jax, .onnx for onnx).", required=True)
FLAGS = flags.FLAGS


def step_read(workdir: str) -> int:
    """The checkpoint step the networks came from: --step, else the newest."""
    return FLAGS.step if FLAGS.step is not None else checkpoint.complete_steps(workdir)[-1]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if bool(FLAGS.workdir) == bool(FLAGS.masker_workdir):
        raise app.UsageError("give --workdir (a translator) or --masker_workdir (a masker), not both")
    checks.check_image_size(FLAGS.height, FLAGS.width, what="--height and --width")
    checks.writable_file(FLAGS.output, "--output")
    batch, onnx = FLAGS.batch or None, FLAGS.format == "onnx"
    if FLAGS.workdir:
        translator = Translator.from_workdir(FLAGS.workdir, FLAGS.step, ins_per=FLAGS.ins_per, ins_max=FLAGS.ins_max)
        metadata = export.translator_metadata(translator, FLAGS.direction, step_read(FLAGS.workdir))
        if onnx:
            written = export.export_translator_onnx(translator, FLAGS.direction, FLAGS.height, FLAGS.width, metadata,
                                                    batch)  # fmt: skip
        else:
            written = export.export_translator(translator, FLAGS.direction, FLAGS.height, FLAGS.width, batch)
    else:
        predictor = MaskPredictor.from_workdir(FLAGS.masker_workdir, FLAGS.step, scale=FLAGS.masker_scale)
        metadata = export.masker_metadata(predictor, step_read(FLAGS.masker_workdir))
        if onnx:
            written = export.export_masker_onnx(predictor, FLAGS.height, FLAGS.width, metadata, batch)
        else:
            written = export.export_masker(predictor, FLAGS.height, FLAGS.width, batch)
    if onnx:
        write_whole(FLAGS.output, lambda f: f.write(written.SerializeToString()), binary=True)
    else:
        export.save_program(FLAGS.output, written, metadata)
    kind = f"an ONNX {metadata['computes']}" if onnx else metadata["computes"]
    print(f"wrote {FLAGS.output}: {kind} for {', '.join(metadata['inputs'])}")


if __name__ == "__main__":
    cli.run(main)
