"""The figures' geometry on the published rows: every legend lies inside its figure, a legend
beside its axes is no wider than them, and the axes keep most of the width (the zoo's 25
series in one legend once ran off the figure)."""
import pytest

from bench.paths import published_models_dir
from bench.report import plots
from bench.store import latest_per_cell, read_rows

FIGURES = [plots.fid_vs_nfe, plots.fid_vs_time]
SUITES = ["quick", "mnist", "zoo"]


def drawn_figure(monkeypatch, tmp_path, figure, suite):
    rows, _ = read_rows(published_models_dir().parent / suite / "rows.jsonl")
    captured = []
    monkeypatch.setattr(plots, "save", lambda fig, stem: captured.append(fig) or [])
    figure(latest_per_cell(rows), tmp_path / "figure")
    fig = captured[0]
    fig.canvas.draw()
    return fig


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f.__name__)
def test_every_legend_lies_inside_its_figure(monkeypatch, tmp_path, figure, suite):
    fig = drawn_figure(monkeypatch, tmp_path, figure, suite)
    frame = fig.bbox
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends
    for legend in legends:
        box = legend.get_window_extent()
        assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1, suite
        assert frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1, suite


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f.__name__)
def test_the_axes_are_wider_than_their_legends(monkeypatch, tmp_path, figure, suite):
    fig = drawn_figure(monkeypatch, tmp_path, figure, suite)
    for ax in fig.axes:
        width = ax.get_window_extent().width
        assert width >= 0.5 * fig.bbox.width, suite
        if ax.get_legend():
            assert ax.get_legend().get_window_extent().width <= width, suite
