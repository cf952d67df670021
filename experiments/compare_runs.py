r"""Draws several runs' learning curves in one chart: each run the mean of its seeds, the spread as a band.

    python experiments/compare_runs.py --out docs/results/bars_equal_time.png --budget_minutes 25.5 \
        --run "InstaGAN=runs/bars/eval/metrics.json,runs/bars_seed1/eval/metrics.json" \
        --run "CycleGAN=runs/bars_cycle/eval/metrics.json,runs/bars_cycle_seed1/eval/metrics.json"

Reads evaluate.py's metrics files (a run's seeds are drawn at the steps all of them scored).
With --budget_minutes, each seed's last scored step is the end of that many minutes and its
checkpoints sit at their share of them: runs of different step costs given the same time
(InstaGAN's 3600 steps, CycleGAN's 21000) line up at equal time even when they were trained
side by side, where their own clocks would say nothing. Without it the x axis is the step.
"""

from absl import app, flags

from instagan_jax import charts, cli, domains, json_files
from instagan_jax.image_io import DataError

flags.DEFINE_multi_string("run", [], "LABEL=METRICS_JSON[,METRICS_JSON...]: one run, one file per seed.")
flags.DEFINE_list("metrics", ["shape_rate", "mask_shape_rate", "count_preservation"], "One panel per metric.")
flags.DEFINE_float("budget_minutes", 0.0, "Minutes every run's last scored step stands for; 0: x is the step.")
flags.DEFINE_string("title", "held-out scores, mean of the seeds (band: min to max)", "The chart's title.")
flags.DEFINE_string("out", None, "The chart's file (PNG, SVG or PDF by its extension).", required=True)
FLAGS = flags.FLAGS


def load_results(path: str) -> list[dict]:
    """evaluate.py's per-checkpoint results in ``path``; DataError naming the file if it holds none."""
    report = json_files.read_json(path)  # a FIFO, a huge or deeply nested file: an error, never a hang or crash
    results = report.get("results") if isinstance(report, dict) else None
    if not results or not isinstance(results, list):
        raise DataError(f"{path}: not a metrics file of evaluate.py (no list of results)")
    for r in results:
        if not (isinstance(r, dict) and isinstance(r.get("step"), int) and r["step"] >= 0
                and all(isinstance(r.get(d), dict) for d in domains.DIRECTIONS)):  # fmt: skip
            raise DataError(f"{path}: a result without a step (>= 0) and scores per direction: {str(r)[:200]}")
    return results


def parse_run(spec: str) -> tuple[str, list[str]]:
    label, sep, paths = spec.partition("=")
    if not sep or not label or not paths:
        raise app.UsageError(f"--run {spec!r}: expected LABEL=METRICS_JSON[,METRICS_JSON...]")
    return label, paths.split(",")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS.run:
        raise app.UsageError("give at least one --run LABEL=METRICS_JSON[,...]")
    specs = [parse_run(spec) for spec in FLAGS.run]
    labels = [label for label, _ in specs]
    if len(set(labels)) < len(labels):  # a dict would keep the last silently
        raise app.UsageError(f"--run labels must differ: {sorted({x for x in labels if labels.count(x) > 1})} twice")
    runs = {label: [load_results(p) for p in paths] for label, paths in specs}
    x, x_label = "step", None
    if FLAGS.budget_minutes:
        runs = {label: [charts.on_budget(s, FLAGS.budget_minutes) for s in seeds] for label, seeds in runs.items()}
        x, x_label = "minutes", f"minutes of a {FLAGS.budget_minutes:g}-minute budget (each step at its share)"
    charts.save(charts.learning_curves(runs, tuple(FLAGS.metrics), FLAGS.title, x=x, x_label=x_label), FLAGS.out)
    print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    cli.run(main)
