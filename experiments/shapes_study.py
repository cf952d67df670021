r"""The shapes study: InstaGAN vs the CycleGAN baseline and the paper's ablations, scored and tabled.

    python experiments/shapes_study.py --root runs/study

Trains (or resumes, or finds finished) one workdir per variant under --root with the default
config (InstaGAN and CycleGAN for --main_steps, the default config's 30 minutes; the ablations
for --steps), scores every checkpoint with experiments/evaluate.py (runs already scored at
every checkpoint are not scored again), and writes ROOT/results.md: the InstaGAN learning
curve, InstaGAN vs CycleGAN, all variants after --steps steps, the charts and the pictures.
Re-running it after a crash continues where it stopped.
"""

import json
import os
import shutil
import subprocess
import sys

from absl import app, flags

from instagan_jax import charts, checkpoint, domains

flags.DEFINE_string("root", "runs/study", "One workdir per variant goes here.")
flags.DEFINE_integer("steps", 400, "Training steps of every variant (the comparison point).")
flags.DEFINE_integer("main_steps", 1800, "Training steps of InstaGAN and of the CycleGAN baseline (default config's).")
flags.DEFINE_integer("every", 200, "Checkpoint (and scoring) interval.")
flags.DEFINE_integer("num_examples", 200, "Held-out images per direction.")
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = {  # name: (what it is, config overrides)
    "insta_gan": ("InstaGAN (default config)", []),
    "cycle_gan": ("CycleGAN baseline", ["--config.model=cycle_gan"]),
    "no_ctx": ("InstaGAN without the context loss", ["--config.lambda_ctx=0"]),
    "no_seq": ("InstaGAN without sequential chunks (all 4 instances at once)", ["--config.ins_per=4"]),
    "random_order": ("InstaGAN, instances in random order", ["--config.set_order=random"]),
}
COLUMNS = ("shape_rate", "count_preservation", "colour_success", "background_error", "mask_shape_rate",
           "mask_count_preservation")  # fmt: skip
COMPARED = ("shape_rate", "count_preservation")  # what both models are charted on, from the translated images


def run(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True)


def train_and_score(name: str, overrides: list[str], steps: int) -> dict:
    workdir = os.path.join(FLAGS.root, name)
    data_dir = os.path.join(FLAGS.root, "tfds_data")
    run([os.path.join(HERE, "train.py"), f"--workdir={workdir}", f"--config={HERE}/configs/default.py",
         f"--config.data_dir={data_dir}", f"--config.num_train_steps={steps}", "--config.max_checkpoints_to_keep=100",
         f"--config.checkpoint_every_steps={FLAGS.every}", *overrides])  # fmt: skip
    metrics = os.path.join(workdir, "eval", "metrics.json")
    if os.path.exists(metrics):  # scored before: only if every checkpoint was
        with open(metrics) as f:
            report = json.load(f)
        if [r["step"] for r in report["results"]] == checkpoint.complete_steps(workdir):
            return report
    run([os.path.join(HERE, "evaluate.py"), f"--workdir={workdir}", "--steps=all",
         f"--num_examples={FLAGS.num_examples}", f"--json={metrics}"])  # fmt: skip
    with open(metrics) as f:
        return json.load(f)


def cell(scores: dict, key: str) -> str:
    return f"{scores[key]:.2f}" if key in scores else "-"


def table(rows: list[tuple[str, dict]]) -> str:
    head = "| | " + " | ".join(f"A→B {c}" for c in COLUMNS) + " | " + " | ".join(f"B→A {c}" for c in COLUMNS) + " |"
    lines = [head, "|---" * (1 + 2 * len(COLUMNS)) + "|"]
    for label, result in rows:
        cells = [cell(result[d], c) for d in domains.DIRECTIONS for c in COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv):
    del argv
    reports = {}
    for name, (_, overrides) in VARIANTS.items():
        steps = FLAGS.main_steps if name in ("insta_gan", "cycle_gan") else FLAGS.steps
        reports[name] = train_and_score(name, overrides, steps)
    at = {name: next(r for r in rep["results"] if r["step"] == FLAGS.steps) for name, rep in reports.items()}
    main_report = reports["insta_gan"]
    pictures = os.path.join(FLAGS.root, "pictures")
    os.makedirs(pictures, exist_ok=True)
    last = main_report["results"][-1]
    for direction in domains.DIRECTIONS:
        shutil.copy(os.path.join(FLAGS.root, "insta_gan", "eval", last["pictures"][direction]), pictures)
    curves = charts.learning_curves({"": [main_report["results"]]}, ("shape_rate", "mask_shape_rate",
                                    "count_preservation"), "InstaGAN, held-out scores by step")  # fmt: skip
    charts.save(curves, os.path.join(pictures, "learning_curves.png"))
    both = {"InstaGAN": [main_report["results"]], "CycleGAN": [reports["cycle_gan"]["results"]]}
    for metric in COMPARED:  # one chart each: four lines stay readable
        chart = charts.learning_curves(both, (metric,), f"{metric}: InstaGAN vs CycleGAN")
        charts.save(chart, os.path.join(pictures, f"insta_vs_cycle_{metric}.png"))
    reference = main_report["reference"]
    text = [
        "# Shapes study", "",
        f"Held-out images per direction: {main_report['num_examples']}. Real target images score "
        f"shape rate {reference['B']['shape_rate']:.2f} (squares) / {reference['A']['shape_rate']:.2f} (discs) and "
        f"count preservation {reference['B']['count_preservation']:.2f} / {reference['A']['count_preservation']:.2f}: "
        "the ceiling, since occlusion and touching instances are in the data.", "",
        "## InstaGAN learning curve", "",
        "![learning curves](pictures/learning_curves.png)", "",
        table([(f"step {r['step']}", r) for r in main_report["results"]]), "",
        f"## InstaGAN vs CycleGAN after {FLAGS.main_steps} steps", "",
        table([(VARIANTS[n][0], reports[n]["results"][-1]) for n in ("insta_gan", "cycle_gan")]), "",
        *(f"![InstaGAN vs CycleGAN, {m}](pictures/insta_vs_cycle_{m}.png)" for m in COMPARED), "",
        f"## All variants after {FLAGS.steps} steps", "",
        table([(VARIANTS[name][0], at[name]) for name in VARIANTS]), "",
        f"## InstaGAN translations at step {last['step']} (input | masks | translated | masks)", "",
        *(f"![{d}](pictures/{last['pictures'][d]})" for d in domains.DIRECTIONS), "",
    ]  # fmt: skip
    with open(os.path.join(FLAGS.root, "results.md"), "w") as f:
        f.write("\n".join(text))
    print(f"wrote {os.path.join(FLAGS.root, 'results.md')}")


if __name__ == "__main__":
    app.run(main)
