"""Charts of evaluation results with matplotlib (headless): learning curves of one or several
runs, each the mean over its seeds with the spread (min to max) as a band.

``results`` are evaluate.py's: a list of {"step", "AtoB": {metric: score}, "BtoA": {...}}, one
per scored checkpoint, plus "minutes" (wall-clock time to the checkpoint) where curves are
drawn over time. The format (PNG, SVG, PDF) follows the file name.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # files only: no display, whatever the machine has

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from instagan_jax import domains  # noqa: E402

LINE_STYLES = {"AtoB": "-", "BtoA": "--"}
X_LABELS = {"step": "checkpoint step", "minutes": "wall-clock minutes (compilation included)"}
PANEL_HEIGHT = 3.0  # inches: a panel with its title and axis labels; the legend below adds rows
LEGEND_ROW_HEIGHT = 0.22


def _per_seed(results_of_seeds: list[list[dict]], direction: str, metric: str, x: str):
    """(x, (seeds, steps) scores) over the steps every seed scored, or None if the metric is absent.

    x at a step is the seeds' mean of r[x]: the step itself, or e.g. the minutes it took.
    """
    steps = sorted(set.intersection(*({r["step"] for r in results} for results in results_of_seeds)))
    if not steps or metric not in next(r for r in results_of_seeds[0] if r["step"] == steps[0])[direction]:
        return None
    by_step = [{r["step"]: r for r in results} for results in results_of_seeds]
    xs = np.mean([[seed[s][x] for s in steps] for seed in by_step], axis=0)
    return xs, np.array([[seed[s][direction][metric] for s in steps] for seed in by_step], np.float64)


def on_budget(results: list[dict], budget_minutes: float) -> list[dict]:
    """The results with "minutes": each step at its share of the budget, the last scored step at its end.

    Runs given the same time but trained side by side (their own clocks then say nothing) are
    drawn at equal time this way, from their step budgets alone.
    """
    last = max(max(r["step"] for r in results), 1)  # a run scored at step 0 only stays at 0
    return [{**r, "minutes": budget_minutes * r["step"] / last} for r in results]


def learning_curves(
    runs: dict[str, list[list[dict]]], metrics: tuple[str, ...], title: str, x: str = "step", x_label: str | None = None
) -> Figure:
    """One panel per metric: a line per (run, direction), colour = run, dashes = B -> A.

    ``runs`` maps a label to the results of each of its seeds. With several seeds the line is
    their mean and a band shows their min-max spread. ``x``: "step", or "minutes" to set runs
    of different step costs side by side at equal time; ``x_label`` names the axis if the
    default for ``x`` would not say what it is.
    """
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.2 * len(metrics), PANEL_HEIGHT), squeeze=False, layout="constrained"
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, (label, seeds) in enumerate(runs.items()):
            for direction in domains.DIRECTIONS:
                curve = _per_seed(seeds, direction, metric, x)
                if curve is None:
                    continue
                xs, scores = curve
                name = f"{label} {direction.replace('to', ' → ')}".strip()
                if len(seeds) > 1:
                    name += f" (mean of {len(seeds)} seeds)"
                colour = colours[i % len(colours)]
                ax.plot(xs, scores.mean(0), LINE_STYLES[direction], color=colour, marker="o", ms=3, label=name)
                if len(seeds) > 1:
                    ax.fill_between(xs, scores.min(0), scores.max(0), color=colour, alpha=0.2, linewidth=0)
        ax.set_title(metric.replace("_", " "))
        ax.set_xlabel(x_label or X_LABELS.get(x, x))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # five-digit steps: fewer ticks, no overlap
        ax.set_ylabel("score")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:  # a metric the first panel lacks may add lines
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle(title)
    ncols = 2 if len(metrics) > 1 else 1
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)
    # the legend sits below the panels: a taller figure for a longer legend keeps the panels' height
    fig.set_figheight(PANEL_HEIGHT + LEGEND_ROW_HEIGHT * math.ceil(len(labels) / ncols))
    return fig


def save(fig: Figure, path: str) -> None:
    """Writes the figure (format from the extension) and frees it."""
    fig.savefig(path, dpi=120, bbox_inches="tight")  # long legend labels and titles are not cut off
    plt.close(fig)
