"""Figures a reader can trust (issue 25): the zoom shows less than the main panel, fixed colours,
legends beside the curves, titles that say what is drawn, the ground truth in one place."""
import matplotlib.colors
import numpy as np
import pandas as pd

from bench.experiments.reproduce.draw import _when
from bench.report import figures


def _rows(spread=0.1):
    rows = []
    for name, end in (("sgd", 10.0), ("adam", 10.0 + spread)):
        for evals in np.geomspace(100, 10_000, 12):
            rows.append({"optimizer": name, "run_key": name, "evals": evals,
                         "test_nll": end + 1.0 / np.log10(evals) - 0.5})
    return pd.DataFrame(rows)


def test_zoom_shows_less_than_the_main_panel():
    for spread, reference in ((0.1, None), (0.01, 9.9), (3.0, 12.0)):
        fig = figures.convergence(_rows(spread), "t", reference)
        main, zoom = fig.axes[:2]
        (m_lo, m_hi), (z_lo, z_hi) = main.get_ylim(), zoom.get_ylim()
        assert m_lo <= z_lo < z_hi <= m_hi, (spread, main.get_ylim(), zoom.get_ylim())
        assert main.get_xlim()[0] <= zoom.get_xlim()[0] and zoom.get_xlim()[1] <= main.get_xlim()[1] * 1.0001
        figures.plt.close(fig)


def _line_colours(ax):
    return {line.get_label(): matplotlib.colors.to_hex(line.get_color()) for line in ax.get_lines()}


def test_one_colour_per_optimizer_in_every_figure_and_legends_outside():
    conv = figures.convergence(_rows(), "t")
    only_adam = figures.convergence(_rows()[lambda r: r.optimizer == "adam"], "t")
    fsc = {"frequency": [0.0, 0.1, 0.2], "fsc": [1.0, 0.8, 0.3]}
    curves = figures.fsc_curves({"adam": fsc, "sgd": fsc}, 1.0, "t")
    colours = [_line_colours(f.axes[0]) for f in (conv, only_adam, curves)]
    assert colours[0]["adam"] == colours[1]["adam"] == colours[2]["adam"] != colours[0]["sgd"]
    for fig in (conv, curves):
        legend = [a.get_legend() for a in fig.axes if a.get_legend()][0]
        fig.canvas.draw()
        box = legend.get_window_extent()
        for ax in fig.axes:                              # the legend lies outside every axes' plotting area
            assert not box.overlaps(ax.get_window_extent())
        figures.plt.close(fig)


def test_titles_say_what_is_drawn_and_the_truth_sits_last():
    assert _when(["final"]) == "at the end"
    assert "5K" not in _when(["final"]) and _when(["5K", "50K", "final"]).startswith("after 5K and 50K")
    vol = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    fig = figures.snapshot_grid({"sgd": {"5K": vol, "final": vol}}, vol, ["5K", "final"], "densities (projections)")
    assert fig._suptitle.get_text() == "densities (projections)"
    truth_row = fig.axes[-2:]                           # last row: [empty, truth]
    assert not truth_row[0].axison and truth_row[0].get_images() == []
    assert truth_row[1].get_images() and truth_row[1].get_title() == "ground truth"
    single = figures.snapshot_grid({"sgd": {"final": vol}}, vol, ["final"], "final densities (projections)")
    assert "(final)" not in single._suptitle.get_text()
    drawn = [a for a in single.axes if a.get_images()]
    assert drawn[-1].get_title() == "ground truth"
    for fig_ in (fig, single):                           # no panel label over the title
        fig_.canvas.draw()
        renderer = fig_.canvas.get_renderer()
        top = max(a.get_tightbbox(renderer).y1 for a in fig_.axes if a.get_images())
        assert fig_._suptitle.get_window_extent(renderer).y0 >= top - 1
