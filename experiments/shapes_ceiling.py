r"""What a perfect discs <-> squares translation scores: the ceiling of each column of the study.

A perfect translation of a held-out example swaps each shape for its counterpart with the
same centre and extents (a disc's bounding rectangle, a rectangle's inscribed ellipse), in
the same order over the same background, in the other domain's colours
(``training_data.perfect_translations``). This scores the held-out examples evaluate.py
scores against their perfect translations with the same metrics, the counterparts' masks
standing for the generated masks. What it does not reach, no translation does: squares grow
past their discs and merge where the discs only touched, occluded squares are not squares,
discs shrink apart.

    python experiments/shapes_ceiling.py --json docs/results/shapes_ceiling.json
"""

from absl import app, flags
from ml_collections import config_flags

from instagan_jax import domains, evaluation, json_files, training_config, training_data

config_flags.DEFINE_config_file("config", "experiments/configs/default.py", "The study's config (its data keys).")
flags.DEFINE_integer("num_examples", 200, "Held-out examples per direction (evaluate.py's default: 200).")
flags.DEFINE_string("json", None, "Where the scores go (printed either way).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = FLAGS.config
    try:
        data = training_data.perfect_translations(config, FLAGS.num_examples)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    task = training_config.shapes_task(config)
    scores = {}
    for direction in domains.DIRECTIONS:
        x, y = domains.source(direction), domains.target(direction)
        inputs, input_masks = data[f"image_{x}"], data[f"masks_{x}"]
        outputs, output_masks = data[f"translated_image_{x}"], data[f"translated_masks_{x}"]
        scores[direction] = evaluation.shapes_scores(inputs, input_masks, outputs, x, y, output_masks, task)
        print(direction, "  ".join(f"{k} {v:.3f}" for k, v in scores[direction].items()))
    if FLAGS.json:
        json_files.write_json(FLAGS.json, {"num_examples": FLAGS.num_examples, "perfect_translation": scores}, indent=1)


if __name__ == "__main__":
    app.run(main)
