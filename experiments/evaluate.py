r"""Scores a training run's translations of held-out images, and writes a results page.

    python experiments/evaluate.py --workdir runs/shapes                  # latest checkpoint
    python experiments/evaluate.py --workdir runs/shapes --steps all      # every checkpoint: learning curves

Reads the dataset and sizes from the config stored in the checkpoint, translates
--num_examples images of the held-out split in both directions, and writes
WORKDIR/eval/metrics.json (or --json), a PNG grid per direction (input | masks | translated
| masks), learning_curves.png (when several steps are scored), TensorBoard scalars (so
`tensorboard --logdir WORKDIR` shows them next to the training losses) and index.html. On
shapes the scores are those of `instagan_jax.evaluation`, with real target images as the
reference; on other datasets, background error and mask-area ratio. With ``--fid_weights``
(pytorch-fid's Inception file), FID and KID of each direction's translations against the
held-out photos of its target domain, both as 8-bit pixels, as pytorch-fid reads saved PNGs.
"""

import html
import json
import os

import numpy as np
from absl import app, flags, logging
from clu import metric_writers
from tqdm import tqdm

from instagan_jax import (
    charts,
    checkpoint,
    checks,
    cli,
    domains,
    evaluation,
    fid,
    image_io,
    inception,
    json_files,
    summaries,
    training_config,
    training_data,
)
from instagan_jax.inference import Translator

flags.DEFINE_string("workdir", None, "Training workdir.", required=True)
flags.DEFINE_list("steps", [], "Checkpoint steps to score, or 'all'; the latest if empty.")
flags.DEFINE_integer("num_examples", 200, "Held-out images per direction.", lower_bound=1, upper_bound=100_000)
flags.DEFINE_string("phase", None, "Held-out split prefix; the config's eval_phase if unset.")
flags.DEFINE_string("json", None, "Where the metrics go; WORKDIR/eval/metrics.json if unset.")
flags.DEFINE_string("out_dir", None, "Where the pictures and index.html go; WORKDIR/eval if unset.")
flags.DEFINE_integer("grid_rows", 8, "Examples shown per direction.", lower_bound=1, upper_bound=1000)
flags.DEFINE_bool("averaged", True, "Score the generators' moving averages where the run keeps them (ema_decay > 0).")
flags.DEFINE_string("fid_weights", None, f"pytorch-fid's {inception.WEIGHTS_NAME}: adds FID and KID (docs/fid.md).")
flags.DEFINE_string("fid_weights_sha256", inception.WEIGHTS_SHA256,
                    "The SHA-256 --fid_weights must have; 'any' accepts other Inception weights.")  # fmt: skip
flags.DEFINE_enum("fid_dims", "2048", [str(d) for d in inception.BLOCKS_FOR_DIMS], "FID feature width (as --dims).")
FLAGS = flags.FLAGS


def translate_all(translator: Translator, images, masks, direction: str, batch_size: int = 50):
    outs = [translator.translate_batch(images[i : i + batch_size], masks[i : i + batch_size], direction)
            for i in range(0, len(images), batch_size)]  # fmt: skip
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def score(config, data, outputs) -> dict:
    """Metrics per direction for one checkpoint."""
    scores, task = {}, training_config.shapes_task(config)
    for direction in domains.DIRECTIONS:
        x, target = domains.source(direction), domains.target(direction)
        fake, fake_masks = outputs[direction]
        generated = fake_masks if config.model == "insta_gan" else None
        if config.dataset == "shapes":
            scores[direction] = evaluation.shapes_scores(
                data[f"image_{x}"], data[f"masks_{x}"], fake, x, target, output_masks=generated, task=task
            )
        else:
            scores[direction] = {
                "background_error": evaluation.background_error(
                    data[f"image_{x}"], data[f"masks_{x}"], fake, fake_masks
                )
            }
        if generated is not None:
            scores[direction]["mask_area_ratio"] = evaluation.mask_area_ratio(data[f"masks_{x}"], generated)
    return scores


def write_pictures(data, outputs, out_dir: str, step: int, rows: int) -> dict[str, str]:
    files = {}
    for direction in domains.DIRECTIONS:
        x = domains.source(direction)
        fake, fake_masks = outputs[direction]
        images, masks = data[f"image_{x}"][:rows], data[f"masks_{x}"][:rows]
        grid = summaries.grid([
            [summaries.to_unit(images[i]), summaries.colour_masks(masks[i]), summaries.to_unit(fake[i]),
             summaries.colour_masks(fake_masks[i])]
            for i in range(len(images))
        ])  # fmt: skip
        name = f"step{step}_{direction}.png"
        big = np.kron(grid, np.ones((3, 3, 1)))  # small images: enlarged for the eye, pixels kept sharp
        summaries.save_png(os.path.join(out_dir, name), big)
        files[direction] = name
    return files


CHART_METRICS = (
    "shape_rate",
    "placed_shape_rate",
    "mask_shape_rate",
    "count_preservation",
    "background_error",
    "bystanders_kept",
    "fid",
    "kid",
)


def as_saved_photos(images: np.ndarray) -> np.ndarray:
    """Translations in [-1, 1] -> [0, 1] at the 8 bits translate.py saves, which pytorch-fid would read."""
    return image_io.to_uint8(images).astype(np.float32) / np.float32(255)


def as_read_photos(images: np.ndarray) -> np.ndarray:
    """Held-out photos in [-1, 1] -> [0, 1] at their files' 8 bits (rounded: the [-1, 1] values are
    those bytes up to float error)."""
    return np.rint((np.asarray(images, np.float32) + 1) * 127.5).astype(np.float32) / np.float32(255)


class FIDScorer:
    """FID and KID of translations against each domain's held-out photos (their statistics computed once)."""

    def __init__(self, weights_path: str, sha256: str | None, dims: int, data):
        self.extractor = fid.InceptionFeatures(inception.load_weights(weights_path, dims, sha256), dims)
        self.real = {x: fid.statistics_of(self.extractor, as_read_photos(data[f"image_{x}"])) for x in "AB"}

    def __call__(self, direction: str, translated: np.ndarray) -> dict:
        generated = fid.statistics_of(self.extractor, as_saved_photos(translated))
        scores = fid.compare(generated, self.real[domains.target(direction)])
        return {k: scores[k] for k in ("fid", "kid", "kid_std")}


def write_curves(results: list[dict], out_dir: str) -> None:
    """learning_curves.png: the main scores of both directions against the checkpoint step
    (those the model has: CycleGAN makes no masks)."""
    metrics = tuple(m for m in CHART_METRICS if any(m in r[d] for r in results for d in domains.DIRECTIONS))
    charts.save(charts.learning_curves({"": [results]}, metrics, "held-out scores by checkpoint step"),
                os.path.join(out_dir, "learning_curves.png"))  # fmt: skip


def write_scalars(results: list[dict], out_dir: str) -> None:
    """The scores as TensorBoard scalars (OUT_DIR is WORKDIR/eval by default: next to the training curves)."""
    writer = metric_writers.create_default_writer(out_dir)
    for r in results:
        writer.write_scalars(r["step"], {f"{d}/{k}": v for d in domains.DIRECTIONS for k, v in r[d].items()})
    writer.close()


def write_html(path: str, workdir: str, results: list[dict], reference: dict | None) -> None:
    metric_names = sorted({k for r in results for d in domains.DIRECTIONS for k in r[d]})
    head = "".join(f"<th>{d} {html.escape(m)}</th>" for d in domains.DIRECTIONS for m in metric_names)
    body = ""
    for r in results:
        cells = "".join(f"<td>{r[d].get(m, float('nan')):.3f}</td>" for d in domains.DIRECTIONS for m in metric_names)
        body += f"<tr><td>{r['step']}</td>{cells}</tr>\n"
    pictures = "".join(
        f"<h3>step {r['step']}, {d}</h3><p>input | input masks | translated | translated masks</p>"
        f"<img src='{r['pictures'][d]}'>"
        for r in results[-1:]
        for d in domains.DIRECTIONS
    )
    curves = "<h3>learning curves</h3><img src='learning_curves.png'>" if len(results) > 1 else ""
    ref = f"<p>Real target images score (the ceiling): {html.escape(json.dumps(reference))}</p>" if reference else ""
    with open(path, "w") as f:
        f.write(
            f"<html><head><title>{html.escape(workdir)}</title></head><body><h1>{html.escape(workdir)}</h1>"
            f"<table border=1><tr><th>step</th>{head}</tr>{body}</table>{ref}{curves}{pictures}</body></html>"
        )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    workdir = FLAGS.workdir
    available = checkpoint.complete_steps(workdir)
    if not available:
        raise app.UsageError(f"{checkpoint.checkpoint_dir(workdir)} holds no complete checkpoint")
    if FLAGS.steps == ["all"]:
        steps = available
    else:
        if not all(s.isdigit() for s in FLAGS.steps):
            raise app.UsageError(f"--steps must be 'all' or checkpoint steps, got {','.join(FLAGS.steps)!r}")
        steps = [int(s) for s in FLAGS.steps] or available[-1:]
        missing = sorted(set(steps) - set(available))
        if missing:
            raise app.UsageError(f"no checkpoint {missing} in {checkpoint.checkpoint_dir(workdir)} (has {available})")
    out_dir = checks.writable_folder(FLAGS.out_dir or os.path.join(workdir, "eval"), "--out_dir")
    json_path = checks.writable_file(FLAGS.json or os.path.join(out_dir, "metrics.json"), "--json")
    config = training_config.stored(checkpoint.load_config(workdir, steps[-1]), checkpoint.step_dir(workdir, steps[-1]))
    try:
        data = training_data.held_out_examples(config, workdir, FLAGS.phase or config.eval_phase, FLAGS.num_examples)
    except ValueError as e:  # no such split
        raise app.UsageError(str(e)) from e
    reference = None
    if config.dataset == "shapes":
        task = training_config.shapes_task(config)
        reference = {x: evaluation.reference_scores(data[f"image_{x}"], data[f"masks_{x}"], x, task) for x in "BA"}
    fid_scorer = None
    if FLAGS.fid_weights:
        sha256 = None if FLAGS.fid_weights_sha256 == "any" else FLAGS.fid_weights_sha256
        fid_scorer = FIDScorer(FLAGS.fid_weights, sha256, int(FLAGS.fid_dims), data)
    results = []
    for step in tqdm(steps, desc="evaluate", unit="checkpoint"):
        translator = Translator.from_workdir(
            workdir, step, averaged=FLAGS.averaged, ins_per=config.ins_per, ins_max=config.ins_max
        )
        outputs = {}
        for d in domains.DIRECTIONS:
            x = domains.source(d)
            outputs[d] = translate_all(translator, data[f"image_{x}"], data[f"masks_{x}"], d)
        result = {"step": step, "averaged": FLAGS.averaged and checkpoint.has_ema(workdir, step),
                  **score(config, data, outputs)}  # fmt: skip
        if fid_scorer is not None:
            for d in domains.DIRECTIONS:
                result[d].update(fid_scorer(d, outputs[d][0]))
        result["pictures"] = write_pictures(data, outputs, out_dir, step, FLAGS.grid_rows)
        results.append(result)
        logging.info("step %d: %s", step, json.dumps({d: result[d] for d in domains.DIRECTIONS}))
    report = {"workdir": os.path.abspath(workdir), "model": config.model, "dataset": config.dataset,
              "num_examples": len(data["image_A"]), "reference": reference, "results": results}  # fmt: skip
    json_files.write_json(json_path, report, indent=1)
    write_scalars(results, out_dir)
    if len(results) > 1:
        write_curves(results, out_dir)
    write_html(os.path.join(out_dir, "index.html"), workdir, results, reference)
    print(f"wrote {json_path} and {os.path.join(out_dir, 'index.html')}")
    for r in results:
        print(f"step {r['step']}: " + "  ".join(
            f"{d} " + " ".join(f"{k}={v:.3f}" for k, v in r[d].items()) for d in domains.DIRECTIONS
        ))  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
