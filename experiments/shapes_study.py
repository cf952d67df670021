r"""The shapes study: InstaGAN vs the CycleGAN baseline, the levers and the paper's ablations,
over seeds, on two tasks, at equal steps and at equal wall-clock time.

    python experiments/shapes_study.py --root runs/study                       # the default rows
    python experiments/shapes_study.py --root runs/study --variants insta_gan,cycle_gan --tasks bars

Trains (or resumes, or finds finished) one workdir per task, variant and seed under --root
(ROOT/TASK/VARIANT/seedS) with the default config in the paper's chunks of two,
discriminators of three layers, the mask path as wide as ngf makes it and the resize's soft
mask edges (--ins_per 2 --n_layers_d 3 --ngf_mask 0 --mask_decoder_width 0 --nobinary_masks:
the settings the reports were made with), --steps steps each (the
learning rate constant for the first half, then decaying to zero), scores every checkpoint
with experiments/evaluate.py (runs already scored at every checkpoint are not scored again;
runs that average their generators are scored with and without the average), and writes
ROOT/OUT (--out, results.md by default): per task, mean and spread over seeds of every row
at equal steps and at equal wall-clock time, the goals of the study checked, learning-curve
charts with the spread as a band, and pictures. Re-running it after a crash continues where
it stopped.

Equal time: CycleGAN steps several times faster than InstaGAN (no masks, no chunks), so the
row "cycle_gan_equal_time" trains CycleGAN for as many steps as fit in InstaGAN's mean
wall-clock time (compilation included), measured on the task's finished InstaGAN and CycleGAN
runs, with its own full schedule and as many checkpoints as the other runs; the equal-time
table sets it against InstaGAN after --steps, and charts set both over wall-clock minutes.
Times are only comparable between runs made on the same, otherwise idle machine, one at a
time.

The default command's budget and settings (default.py: one chunk of four slots, two
discriminator layers, a mask encoder of width 8, thresholded masks, 6000 steps) are ``--ins_per 4
--n_layers_d 2 --ngf_mask 8 --binary_masks --steps 6000 --every 300``.
"""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from instagan_jax import charts, checkpoint, domains, json_files
from instagan_jax.datasets import shapes

flags.DEFINE_string("root", "runs/study", "One workdir per task, variant and seed goes here.")
flags.DEFINE_list("tasks", ["squares", "bars"], "Shapes tasks (datasets.shapes.TASKS).")
flags.DEFINE_list("variants", ["insta_gan", "cycle_gan", "insta_gan_paper"], "Rows to train (see VARIANTS).")
flags.DEFINE_integer("seeds", 3, "Seeds per row (config.seed 0, 1, ...).", lower_bound=1)
flags.DEFINE_integer("steps", 600, "Training steps of every run.", lower_bound=1)
flags.DEFINE_integer("every", 200, "Checkpoint (and scoring) interval.", lower_bound=1)
flags.DEFINE_integer("ins_per", 2, "Mask slots per chunk: 2, the paper's (the reports); 4, default.py's one chunk.")
flags.DEFINE_integer("n_layers_d", 3, "Discriminator layers: 3, the paper's (the reports); 2, default.py's.")
flags.DEFINE_integer("ngf_mask", 0, "InstaGAN's mask-encoder width: 0, ngf's (the reports); 8, default.py's.")
flags.DEFINE_integer("mask_decoder_width", 0, "InstaGAN's mask-decoder width: 0, from its inputs (the reports').")
flags.DEFINE_bool("binary_masks", False, "Threshold the masks at half: no, the reports' soft edges; yes, default.py's.")
flags.DEFINE_integer("num_examples", 200, "Held-out images per direction.", lower_bound=1, upper_bound=100_000)
flags.DEFINE_string("out", "results.md", "The report's file name, under --root.")
FLAGS = flags.FLAGS

HERE = os.path.dirname(os.path.abspath(__file__))
LEVERS = ["--config.upsample=resize_conv", "--config.ema_decay=0.999"]  # not in the paper (nor is the default lr)
PAPER_LR = ["--config.learning_rate=2e-4"]
PAPER = ["--config.upsample=transpose", "--config.ema_decay=0", "--config.binary_masks=False", *PAPER_LR]  # no EMA
CYCLE_GAN = ["--config.model=cycle_gan"]
VARIANTS = {  # name: (what it is, config overrides on top of the default config)
    "insta_gan": ("InstaGAN", LEVERS),
    "cycle_gan": ("CycleGAN", [*CYCLE_GAN, *LEVERS]),
    "cycle_gan_equal_time": ("CycleGAN, InstaGAN's time", [*CYCLE_GAN, *LEVERS]),
    "insta_gan_paper_lr": ("InstaGAN, paper's learning rate", [*PAPER_LR, *LEVERS]),
    "cycle_gan_paper_lr": ("CycleGAN, paper's learning rate", [*CYCLE_GAN, *PAPER_LR, *LEVERS]),
    "insta_gan_lr8e-4": ("InstaGAN, learning rate 8e-4", ["--config.learning_rate=8e-4", *LEVERS]),
    "insta_gan_paper": ("InstaGAN, paper's upsampling and learning rate, no average", PAPER),
    "cycle_gan_paper": ("CycleGAN, paper's upsampling and learning rate, no average", [*CYCLE_GAN, *PAPER]),
    "weak_cycle": (
        "InstaGAN, paper's learning rate, cycle weight 3",
        ["--config.lambda_a=3", "--config.lambda_b=3", *PAPER_LR, *LEVERS],
    ),
    "no_ctx": ("InstaGAN without the context loss", ["--config.lambda_ctx=0", *LEVERS]),
    "no_seq": ("InstaGAN without sequential chunks", ["--config.ins_per=4", *LEVERS]),
    "random_order": ("InstaGAN, instances in random order", ["--config.set_order=random", *LEVERS]),
    "d_two_layers": ("InstaGAN, discriminators of two strided layers", ["--config.n_layers_d=2", *LEVERS]),
    "narrow_masks": ("InstaGAN, mask encoder of width 8", ["--config.ngf_mask=8", *LEVERS]),
    "binary_masks": ("InstaGAN, masks thresholded at half", ["--config.binary_masks=True", *LEVERS]),
    "bfloat16": ("InstaGAN computing in bfloat16", ["--config.compute_dtype=bfloat16", *LEVERS]),
}
# The study's flags that set a config key of every run (a variant's overrides come after them).
PINNED = ("ins_per", "n_layers_d", "ngf_mask", "mask_decoder_width", "binary_masks")
TRAINED = " (trained weights, not the average)"  # the row of a run scored without its average
COLUMNS = (
    "shape_rate",
    "placed_shape_rate",
    "mask_shape_rate",
    "count_preservation",
    "colour_success",
    "background_error",
)
CHARTED = ("shape_rate", "placed_shape_rate", "mask_shape_rate", "count_preservation")
TIMING = "study_timing.json"


def run(args: list[str]) -> None:
    print("+", " ".join(args), flush=True)
    subprocess.run([sys.executable, *args], check=True)


def train_args(workdir: str, task: str, overrides: list[str], seed: int, steps: int, every: int) -> list[str]:
    """train.py's command line for one run: the default config, the pinned flags, the variant's overrides."""
    half = steps // 2
    return [os.path.join(HERE, "train.py"), f"--workdir={workdir}", f"--config={HERE}/configs/default.py",
            f"--config.data_dir={os.path.join(FLAGS.root, 'tfds_data')}", f"--config.shapes_task={task}",
            f"--config.seed={seed}", f"--config.num_train_steps={steps}", f"--config.niter={half}",
            f"--config.niter_decay={steps - half}", f"--config.checkpoint_every_steps={every}",
            f"--config.image_every_steps={steps}", "--config.max_checkpoints_to_keep=1000",
            *(f"--config.{key}={FLAGS[key].value}" for key in PINNED), *overrides]  # fmt: skip


def study_command() -> str:
    """The command line that regenerates this report, every flag spelled out."""
    names = ("root", "tasks", "variants", "seeds", "steps", "every", "num_examples", "out", *PINNED)
    return "python experiments/shapes_study.py " + " ".join(FLAGS[name].serialize() for name in names)


def train(workdir: str, task: str, overrides: list[str], seed: int, steps: int, every: int) -> None:
    """Trains the run to ``steps``, a checkpoint every ``every``; notes when its first start began."""
    timing_path = os.path.join(workdir, TIMING)
    if os.path.exists(timing_path) and checkpoint.complete_steps(workdir)[-1:] == [steps]:
        return  # finished before
    if not os.path.exists(timing_path):
        os.makedirs(workdir, exist_ok=True)
        resumed = bool(checkpoint.complete_steps(workdir))
        json_files.write_json(timing_path, {"started": time.time(), "resumed": resumed})
    else:  # a restart: its times include the pause
        json_files.write_json(timing_path, {**json_files.read_json(timing_path), "resumed": True})
    run(train_args(workdir, task, overrides, seed, steps, every))


def score(workdir: str, averaged: bool) -> dict:
    """evaluate.py's report on every checkpoint, from its file if it scored them all already."""
    out_dir = os.path.join(workdir, "eval" if averaged else "eval_trained")
    metrics = os.path.join(out_dir, "metrics.json")
    if os.path.exists(metrics):
        report = json_files.read_json(metrics)
        if [r["step"] for r in report["results"]] == checkpoint.complete_steps(workdir):
            return report
    run([os.path.join(HERE, "evaluate.py"), f"--workdir={workdir}", "--steps=all", f"--out_dir={out_dir}",
         f"--num_examples={FLAGS.num_examples}", f"--averaged={averaged}"])  # fmt: skip
    return json_files.read_json(metrics)


def seconds_at(workdir: str) -> dict[int, float]:
    """Wall-clock seconds from the run's start to each checkpoint's last file."""
    started = json_files.read_json(os.path.join(workdir, TIMING))["started"]
    times = {}
    for step in checkpoint.complete_steps(workdir):
        folder = checkpoint.step_dir(workdir, step)
        times[step] = max(os.path.getmtime(os.path.join(d, n)) for d, _, names in os.walk(folder) for n in names)
    return {step: t - started for step, t in times.items()}


def mean_seconds(task: str, name: str) -> float:
    """Mean wall-clock time of the task's finished runs of ``name`` (all their steps)."""
    runs = [os.path.join(FLAGS.root, task, name, f"seed{seed}") for seed in range(FLAGS.seeds)]
    done = [max(seconds_at(r).values()) for r in runs if checkpoint.complete_steps(r)[-1:] == [FLAGS.steps]]
    if not done:
        raise app.UsageError(f"{name} has no finished run for task {task}: train it first (it sets the time budget)")
    return float(np.mean(done))


def steps_of(task: str, name: str) -> int:
    """--steps, or for the equal-time CycleGAN the steps that fit in InstaGAN's time (whole checkpoints)."""
    if name != "cycle_gan_equal_time":
        return FLAGS.steps
    steps_path = os.path.join(FLAGS.root, task, name, "steps.json")
    if os.path.exists(steps_path):  # decided once, kept
        return json_files.read_json(steps_path)
    ratio = mean_seconds(task, "insta_gan") / mean_seconds(task, "cycle_gan")
    steps = max(1, round(FLAGS.steps * ratio / FLAGS.every)) * FLAGS.every
    os.makedirs(os.path.dirname(steps_path), exist_ok=True)
    json_files.write_json(steps_path, steps)
    return steps


def with_minutes(report: dict, seconds: dict[int, float]) -> list[dict]:
    """The report's results, each with the wall-clock minutes its checkpoint took (for charts over time)."""
    return [{**r, "minutes": seconds[r["step"]] / 60} for r in report["results"]]


def collect(task: str) -> dict[str, list[dict]]:
    """Row label -> one entry per seed: {"results": evaluate.py's, "seconds": {step: s}, "resumed"}."""
    rows = {}
    for name in FLAGS.variants:
        label, overrides = VARIANTS[name]
        for seed in range(FLAGS.seeds):
            workdir = os.path.join(FLAGS.root, task, name, f"seed{seed}")
            steps = steps_of(task, name)
            every = max(steps * FLAGS.every // FLAGS.steps, 1)  # as many checkpoints as the other runs
            train(workdir, task, overrides, seed, steps, every)
            resumed = json_files.read_json(os.path.join(workdir, TIMING))["resumed"]
            entry = {"seconds": seconds_at(workdir), "resumed": resumed}
            results = with_minutes(score(workdir, True), entry["seconds"])
            rows.setdefault(label, []).append({**entry, "results": results})
            if results[-1].get("averaged"):  # the same run without its average
                trained = with_minutes(score(workdir, False), entry["seconds"])
                rows.setdefault(label + TRAINED, []).append({**entry, "results": trained})
    return rows


SPREAD = "mean ± population standard deviation over seeds"


def summary(results: list[dict], direction: str, metric: str) -> tuple[float, float] | None:
    """Mean and population standard deviation (np.std: divided by the number of seeds, not one less)."""
    values = [r[direction][metric] for r in results if metric in r[direction]]
    return (float(np.mean(values)), float(np.std(values))) if values else None


def table(rows: dict[str, list[dict]]) -> str:
    """rows: label -> one result per seed. Cells: ``summary`` of the seeds."""
    cols = [(d, c) for d in domains.DIRECTIONS for c in COLUMNS]
    lines = ["| | seeds | " + " | ".join(f"{d.replace('to', '→')} {c}" for d, c in cols) + " |",
             "|---" * (2 + len(cols)) + "|"]  # fmt: skip
    for label, results in rows.items():
        cells = []
        for d, c in cols:
            s = summary(results, d, c)
            cells.append("-" if s is None else f"{s[0]:.2f} ± {s[1]:.2f}")
        lines.append(f"| {label} | {len(results)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


GOALS = (  # issue #13, on the squares task after the default budget: (direction, metric, bound, at least?)
    ("AtoB", "shape_rate", 0.6, True),
    ("AtoB", "mask_shape_rate", 0.85, True),
    ("AtoB", "count_preservation", 0.9, True),
    ("BtoA", "count_preservation", 0.9, True),
    ("AtoB", "background_error", 0.05, False),
    ("BtoA", "background_error", 0.05, False),
)


def goals(task: str, rows_by_budget: dict[str, dict[str, list[dict]]]) -> list[str]:
    """The study's goals checked: absolute scores (squares, equal steps), and InstaGAN ahead of
    CycleGAN in every shape column by more than twice the larger seed spread (both budgets)."""
    lines = []
    insta = VARIANTS["insta_gan"][0]
    for budget, rows in rows_by_budget.items():
        cycle = VARIANTS["cycle_gan_equal_time" if budget == "equal time" else "cycle_gan"][0]
        if insta not in rows:
            continue
        for direction, metric, bound, at_least in GOALS if task == "squares" and budget == "equal steps" else ():
            mean, _ = summary(rows[insta], direction, metric)
            reached = mean >= bound if at_least else mean <= bound
            lines.append(f"- {budget}: {direction.replace('to', ' → ')} {metric} {'≥' if at_least else '≤'} {bound}: "
                         f"{mean:.2f}, {'reached' if reached else 'not reached'}")  # fmt: skip
        for direction in domains.DIRECTIONS if cycle in rows else ():
            (m1, s1), (m2, s2) = (summary(rows[r], direction, "shape_rate") for r in (insta, cycle))
            margin, needed = m1 - m2, 2 * max(s1, s2)
            lines.append(f"- {budget}: InstaGAN ahead of CycleGAN in {direction.replace('to', ' → ')} shape rate by "
                         f"more than twice the seed spread: {m1:.2f} vs {m2:.2f}, margin {margin:+.2f} vs "
                         f"{needed:.2f}, {'reached' if margin > needed else 'not reached'}")  # fmt: skip
    return lines


def report_picture(pictures: str, name: str) -> str:
    """The path of one of this report's pictures: named after the report, as reports share the folder."""
    return os.path.join(pictures, f"{os.path.splitext(FLAGS.out)[0]}_{name}")


def chart(curves: dict[str, list[list[dict]]], task: str, metric: str, x: str, pictures: str) -> str:
    """Draws the rows' learning curves of one metric over ``x`` ("step" or "minutes"); the Markdown image."""
    suffix = "" if x == "step" else f"_by_{x}"
    path = report_picture(pictures, f"{task}_{metric}{suffix}.png")
    title = f"{task}: {metric}, mean and min-max over seeds" + ("" if x == "step" else f", by {x}")
    charts.save(charts.learning_curves(curves, (metric,), title, x=x), path)
    return f"![{task} {metric}{suffix.replace('_', ' ')}](pictures/{os.path.basename(path)})"


def task_section(task: str, rows: dict[str, list[dict]], reference: dict, pictures: str) -> list[str]:
    timed_cycle = VARIANTS["cycle_gan_equal_time"][0]
    final = {label: [seed["results"][-1] for seed in seeds] for label, seeds in rows.items()
             if not label.startswith(timed_cycle)}  # fmt: skip
    insta = VARIANTS["insta_gan"][0]
    text = [f"## Task: {task}", "",
            f"Real target images (the ceiling: occlusion and touching instances are in the data): shape rate "
            f"{reference['B']['shape_rate']:.2f} (B) / {reference['A']['shape_rate']:.2f} (A), count "
            f"preservation {reference['B']['count_preservation']:.2f} / {reference['A']['count_preservation']:.2f}.",
            ""]  # fmt: skip
    text += [f"### Equal steps: after {FLAGS.steps} steps ({SPREAD})", "", table(final), ""]
    by_budget = {"equal steps": final}
    if insta in rows and timed_cycle in rows:
        timed = {label: [seed["results"][-1] for seed in seeds] for label, seeds in rows.items()
                 if label == insta or label.startswith(timed_cycle)}  # fmt: skip
        minutes = {label: np.mean([max(seed["seconds"].values()) for seed in rows[label]]) / 60 for label in timed}
        text += [f"### Equal time ({SPREAD})", "",
                 "Mean wall-clock time per run, compilation included: " + "; ".join(
                     f"{label}: {m:.1f} min, {rows[label][0]['results'][-1]['step']} steps"
                     for label, m in minutes.items()), "", table(timed), ""]  # fmt: skip
        by_budget["equal time"] = timed
        if any(seed["resumed"] for seeds in rows.values() for seed in seeds):
            text += ["(Some runs were restarted: their times include the pause.)", ""]
    checked = goals(task, by_budget)
    text += ["### Goals", "", *checked, ""] if checked else []
    curves = {label: [seed["results"] for seed in seeds] for label, seeds in rows.items() if TRAINED not in label}
    by_step = {label: seeds for label, seeds in curves.items() if label != timed_cycle}  # one step axis
    text += [chart(by_step, task, metric, "step", pictures) for metric in CHARTED] + [""]
    if "equal time" in by_budget:
        by_time = {label: curves[label] for label in (insta, timed_cycle)}
        text += [chart(by_time, task, metric, "minutes", pictures) for metric in CHARTED] + [""]
    for name in ("insta_gan", "cycle_gan", "cycle_gan_equal_time"):
        workdir = os.path.join(FLAGS.root, task, name, "seed0")
        if name not in FLAGS.variants:
            continue
        last = score(workdir, True)["results"][-1]
        text += [f"{VARIANTS[name][0]}, seed 0, step {last['step']} (input | masks | translated | masks):", ""]
        for direction in domains.DIRECTIONS:
            picture = report_picture(pictures, f"{task}_{name}_{last['pictures'][direction]}")
            shutil.copy(os.path.join(workdir, "eval", last["pictures"][direction]), picture)
            text.append(f"![{task} {name} {direction}](pictures/{os.path.basename(picture)})")
        text.append("")
    return text


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.variants) - set(VARIANTS))
    if unknown:
        raise app.UsageError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    unknown = sorted(set(FLAGS.tasks) - set(shapes.TASKS))
    if unknown:
        raise app.UsageError(f"unknown tasks {unknown}; known: {list(shapes.TASKS)}")
    pictures = os.path.join(FLAGS.root, "pictures")
    os.makedirs(pictures, exist_ok=True)
    text = ["# Shapes study", "",
            f"{FLAGS.seeds} seed{'s' if FLAGS.seeds > 1 else ''} per row, {FLAGS.steps} steps per run, "
            f"{FLAGS.num_examples} held-out images per direction; the default config with "
            + ", ".join(f"{key} {FLAGS[key].value}" for key in PINNED)
            + f" otherwise (`{study_command()}`).", ""]  # fmt: skip
    for task in FLAGS.tasks:
        rows = collect(task)
        reference = score(os.path.join(FLAGS.root, task, FLAGS.variants[0], "seed0"), True)["reference"]
        text += task_section(task, rows, reference, pictures)
    with open(os.path.join(FLAGS.root, FLAGS.out), "w") as f:
        f.write("\n".join(text))
    print(f"wrote {os.path.join(FLAGS.root, FLAGS.out)}")


if __name__ == "__main__":
    app.run(main)
