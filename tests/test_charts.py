"""Learning-curve charts: mean over seeds with the spread as a band, one panel per metric."""

import json
import pathlib
import subprocess
import sys

import numpy as np

from instagan_jax import charts

COMPARE_RUNS = pathlib.Path(__file__).resolve().parents[1] / "experiments" / "compare_runs.py"


def results(offset):
    return [{"step": s, "AtoB": {"shape_rate": 0.1 * s + offset}, "BtoA": {"shape_rate": 0.05 * s}} for s in (1, 2, 3)]


def test_a_run_of_several_seeds_is_drawn_as_its_mean_with_a_min_max_band(tmp_path):
    fig = charts.learning_curves({"InstaGAN": [results(0.0), results(0.2)], "CycleGAN": [results(0.1)]},
                                 ("shape_rate",), "title")  # fmt: skip
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    mean = lines["InstaGAN A → B (mean of 2 seeds)"]
    np.testing.assert_allclose(mean.get_ydata(), [0.2, 0.3, 0.4])
    np.testing.assert_allclose(lines["CycleGAN A → B"].get_ydata(), [0.2, 0.3, 0.4])
    assert lines["CycleGAN B → A"].get_linestyle() == "--"
    (band_a, band_b) = ax.collections  # one band per direction of the two-seed run, none for one seed
    low, high = band_a.get_paths()[0].vertices[:, 1].min(), band_a.get_paths()[0].vertices[:, 1].max()
    np.testing.assert_allclose([low, high], [0.1, 0.5])
    assert ax.get_xlabel() == "checkpoint step" and ax.get_title() == "shape rate"
    assert len(fig.legends[0].get_texts()) == 4
    charts.save(fig, str(tmp_path / "chart.svg"))
    svg = (tmp_path / "chart.svg").read_text()
    assert svg.startswith("<?xml") and "checkpoint step" in svg


def test_a_metric_only_one_direction_has_gets_only_its_lines(tmp_path):
    one_sided = [{"step": s, "AtoB": {"mask_area_ratio": 1.0}, "BtoA": {}} for s in (0, 5)]
    fig = charts.learning_curves({"": [one_sided]}, ("mask_area_ratio",), "t")
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["A → B"]
    charts.save(fig, str(tmp_path / "chart.png"))
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_over_time_put_each_step_at_the_seeds_mean_minutes():
    slow = [{**r, "minutes": 2.0 * r["step"]} for r in results(0.0)]
    slower = [{**r, "minutes": 4.0 * r["step"]} for r in results(0.2)]
    fast = [{**r, "step": 10 * r["step"], "minutes": 0.5 * r["step"]} for r in results(0.1)]
    fig = charts.learning_curves({"InstaGAN": [slow, slower], "CycleGAN": [fast]}, ("shape_rate",), "t", x="minutes")
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["InstaGAN A → B (mean of 2 seeds)"].get_xdata(), [3.0, 6.0, 9.0])
    np.testing.assert_allclose(lines["CycleGAN A → B"].get_xdata(), [0.5, 1.0, 1.5])
    np.testing.assert_allclose(lines["CycleGAN A → B"].get_ydata(), [0.2, 0.3, 0.4])
    assert ax.get_xlabel().startswith("wall-clock minutes")


def test_runs_of_different_step_budgets_meet_at_the_end_of_the_same_minutes():
    insta = charts.on_budget([{**r, "step": 1200 * r["step"]} for r in results(0.0)], 25.5)
    cycle = charts.on_budget([{**r, "step": 7000 * r["step"]} for r in results(0.1)], 25.5)
    np.testing.assert_allclose([r["minutes"] for r in insta], [8.5, 17.0, 25.5])
    np.testing.assert_allclose([r["minutes"] for r in cycle], [8.5, 17.0, 25.5])
    fig = charts.learning_curves({"InstaGAN": [insta], "CycleGAN": [cycle]}, ("shape_rate",), "t", x="minutes",
                                 x_label="minutes of the budget")  # fmt: skip
    (ax,) = fig.axes
    assert ax.get_xlabel() == "minutes of the budget"
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["CycleGAN A → B"].get_xdata(), lines["InstaGAN A → B"].get_xdata())


def test_compare_runs_draws_each_run_over_its_seed_files_and_names_a_file_it_cannot_read(tmp_path):
    paths = []
    for seed in range(2):
        paths.append(tmp_path / f"metrics_seed{seed}.json")
        paths[-1].write_text(json.dumps({"model": "insta_gan", "results": results(0.1 * seed)}))
    broken = tmp_path / "broken.json"
    broken.write_text('{"results": [{"step": 1}]}')
    command = [sys.executable, str(COMPARE_RUNS), f"--run=InstaGAN={paths[0]},{paths[1]}", "--metrics=shape_rate",
               "--budget_minutes=25.5"]  # fmt: skip
    drawn = subprocess.run([*command, f"--out={tmp_path / 'chart.svg'}"], capture_output=True, text=True, timeout=120)
    assert drawn.returncode == 0, drawn.stderr
    svg = (tmp_path / "chart.svg").read_text()
    assert "InstaGAN A → B (mean of 2 seeds)" in svg and "25.5-minute budget" in svg
    refused = subprocess.run([*command, f"--run=CycleGAN={broken}", f"--out={tmp_path / 'not.svg'}"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode != 0 and str(broken) in refused.stderr and "per direction" in refused.stderr
    assert not (tmp_path / "not.svg").exists()
    twice = subprocess.run([*command, f"--run=InstaGAN={paths[0]}", f"--out={tmp_path / 'not.svg'}"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert twice.returncode != 0 and "labels must differ: ['InstaGAN']" in twice.stderr
    assert not (tmp_path / "not.svg").exists()


def test_a_long_legend_sits_below_the_panel_without_squashing_it():
    def layout(n_runs):
        fig = charts.learning_curves({f"run {i}": [results(0.1 * i)] for i in range(n_runs)}, ("shape_rate",), "t")
        fig.canvas.draw()  # constrained layout places the panel and legend at draw time
        (ax,) = fig.axes
        legend, panel = fig.legends[0].get_window_extent(), ax.get_window_extent()
        assert legend.y1 <= panel.y0, (n_runs, legend, panel)  # no overlap
        return panel.height / fig.dpi  # inches

    one, many = layout(1), layout(6)  # a legend of 2 entries against 12
    assert many > 0.85 * one, (one, many)
