"""Learning-curve charts: mean over seeds with the spread as a band, one panel per metric."""

import numpy as np

from instagan_jax import charts


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
