"""Issue 31: the scaling-fit figure with two sizes that tie (the demo's tiny-a and tiny-b can): the
slope panel's tick labels do not overlap (they did: log-scale minor labels 2.2×10⁶, 2.4×10⁶, ... over
each other), and each size's line stays visible on top of the other (own dash pattern and marker)."""
import numpy as np
import pandas as pd

from elicit.report import figures


def tied_fit(monkeypatch):
    monkeypatch.setattr(figures, "save", lambda fig, path: fig)  # keep the figure open, unsaved
    sizes, benches = ["tiny-a", "tiny-b"], ["AIME", "GPQA"]
    rows = [dict(size=s, benchmark=b, params=p, slope=20.0, slope_lo=10.0, slope_hi=30.0, intercept=-40.0)
            for s, p in (("tiny-a", 2.1e6), ("tiny-b", 3.3e6)) for b in benches]
    points = {(s, b): (np.array([8, 16]), np.array([20.0, 40.0])) for s in sizes for b in benches}
    return figures.scaling_fit(pd.DataFrame(rows), points, sizes, benches, None)


def test_slope_panel_tick_labels_do_not_overlap(monkeypatch):
    fig = tied_fit(monkeypatch)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes[2:]:  # the slope panels (second row)
        labels = ax.get_xticklabels() + ax.get_xticklabels(minor=True)
        boxes = [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]
        assert len(boxes) == 2, [t.get_text() for t in labels]  # a tick per size, no minor labels
        boxes.sort(key=lambda b: b.x0)
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))
        assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["tiny-a", "tiny-b"]


def test_tied_lines_stay_apart(monkeypatch):
    fig = tied_fit(monkeypatch)
    for ax in fig.axes[:2]:
        fits = [line for line in ax.get_lines() if line.get_label().startswith("tiny-")]
        assert len(fits) == 2
        assert fits[0].get_linestyle() != fits[1].get_linestyle()  # the one drawn last does not hide the other
        dots = [line for line in ax.get_lines() if line.get_marker() not in ("None", None, "")
                and line.get_linestyle() in ("None", "")]
        assert len({line.get_marker() for line in dots}) == 2  # own marker per size
        assert len({tuple(line.get_xdata()) for line in dots}) == 2  # dodged sideways
