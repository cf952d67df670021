r"""Scores a trained instance masker on held-out images, against connected components.

    python experiments/evaluate_masker.py --workdir runs/shapes_masker
    python experiments/evaluate_masker.py --workdir runs/shapes_masker --instagan_workdir runs/shapes

Reads the dataset from the config stored with the masker. Instance quality: matched mask IoU
and instance-count accuracy of the masker, and of the baseline (connected components of the
masker's own foreground map). With --instagan_workdir (a shapes run), also the translation
scores of that InstaGAN fed predicted vs. true masks: what using the masker costs.
With --scales 1,2,4 (the shapes set), also the masker on held-out shapes rendered at each
multiple of the training size (objects that many times larger), masked as they are (scale 1)
and with the scale read off each photo (scale auto, the default of MaskPredictor and translate.py).
Writes a JSON (--json, default WORKDIR/eval/masker.json) and prints a table.
"""

import dataclasses
import os

import numpy as np
from absl import app, flags

from instagan_jax import checkpoint, checks, cli, domains, evaluation, json_files, training_config, training_data
from instagan_jax import masker as masker_lib
from instagan_jax.inference import Translator
from instagan_jax.mask_prediction import MaskPredictor

flags.DEFINE_string("workdir", None, "Masker workdir (experiments/train_masker.py).", required=True)
flags.DEFINE_string("instagan_workdir", None, "An InstaGAN workdir to translate with predicted vs. true masks.")
flags.DEFINE_integer("num_examples", 200, "Held-out images per domain.", lower_bound=1, upper_bound=100_000)
flags.DEFINE_string("json", None, "Where the scores go; WORKDIR/eval/masker.json if unset.")
flags.DEFINE_list("scales", [], "Shapes set: also score photos rendered at these multiples of the training size.")
FLAGS = flags.FLAGS


def predict_in_batches(predictor: MaskPredictor, images: np.ndarray, batch_size: int = 64):
    """(masks, foreground) of every image."""
    batches = [predictor.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate([m for m, _ in batches]), np.concatenate([f for _, f in batches])


def scale_scores(predictor: MaskPredictor, config, scales: list[int]) -> dict:
    """{scale: {domain: {"scale 1": scores, "scale auto": scores}}} on shapes rendered at each scale."""
    report = {}
    for scale in scales:
        data = training_data.rendered_held_out(config, FLAGS.num_examples, scale=scale)
        report[scale] = {
            x: {f"scale {s}": evaluation.instance_scores(data[f"masks_{x}"], predict_in_batches(
                    dataclasses.replace(predictor, scale=s), data[f"image_{x}"])[0]) for s in (1, "auto")}
            for x in domains.DOMAINS
        }  # fmt: skip
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not all(s.isdigit() and 1 <= int(s) <= 16 for s in FLAGS.scales):
        raise app.UsageError(f"--scales must be whole numbers from 1 to 16, got {','.join(FLAGS.scales)}")
    scales = [int(s) for s in FLAGS.scales]
    path = checks.writable_file(FLAGS.json or os.path.join(FLAGS.workdir, "eval", "masker.json"), "--json")
    predictor = MaskPredictor.from_workdir(FLAGS.workdir)
    config = training_config.stored(checkpoint.load_config(FLAGS.workdir), FLAGS.workdir)
    data = training_data.held_out_examples(config, FLAGS.workdir, config.eval_phase, FLAGS.num_examples)
    report = {"workdir": os.path.abspath(FLAGS.workdir), "num_examples": FLAGS.num_examples, "domains": {}}
    predicted = {}
    for x in domains.DOMAINS:
        predicted[x], foreground = predict_in_batches(predictor, data[f"image_{x}"])
        baseline = masker_lib.connected_components(foreground, predictor.spec.ins_max)
        report["domains"][x] = {
            "masker": evaluation.instance_scores(data[f"masks_{x}"], predicted[x]),
            "connected_components": evaluation.instance_scores(data[f"masks_{x}"], baseline),
        }
    if FLAGS.scales:
        report["scales"] = scale_scores(predictor, config, scales)
    if FLAGS.instagan_workdir:
        translator = Translator.from_workdir(FLAGS.instagan_workdir, ins_per=2, ins_max=config.ins_max)
        report["translation"] = {}
        task = training_config.shapes_task(checkpoint.load_config(FLAGS.instagan_workdir))
        for direction in domains.DIRECTIONS:
            x, target = domains.source(direction), domains.target(direction)
            scores = {}
            for name, masks in (("true_masks", data[f"masks_{x}"]), ("predicted_masks", predicted[x])):
                fake, fake_masks = translator.translate_batch(data[f"image_{x}"], masks, direction)
                scores[name] = evaluation.shapes_scores(data[f"image_{x}"], data[f"masks_{x}"], fake, x, target,
                                                        output_masks=fake_masks, task=task)  # fmt: skip
            report["translation"][direction] = scores
    json_files.write_json(path, report, indent=1)
    print(f"{'domain':6} {'method':22} {'matched IoU':>11} {'count acc':>9} {'count err':>9}")
    for x, methods in report["domains"].items():
        for method, s in methods.items():
            print(f"{x:6} {method:22} {s['matched_iou']:11.3f} {s['count_accuracy']:9.3f} {s['count_error']:9.3f}")
    for scale, by_domain in report.get("scales", {}).items():
        for x, methods in by_domain.items():
            for method, s in methods.items():
                print(f"{x:6} {f'{scale}x, masker {method}':22} {s['matched_iou']:11.3f} {s['count_accuracy']:9.3f} "
                      f"{s['count_error']:9.3f}")  # fmt: skip
    for direction, scores in report.get("translation", {}).items():
        for name, s in scores.items():
            print(f"{direction} with {name}: " + " ".join(f"{k}={v:.3f}" for k, v in s.items()))
    print(f"wrote {path}")


if __name__ == "__main__":
    cli.run(main)
