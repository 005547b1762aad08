"""The selection rule: the last checkpoint within 0.1 nats of the best validation loss."""
import math

import pytest
from hypothesis import given, settings, strategies as st

from select_checkpoint import select


def curve(*losses, every=10):
    return [{"step": i * every, "val_loss": loss} for i, loss in enumerate(losses)]


def test_picks_best_when_later_ones_are_worse():
    s = select(curve(2.0, 1.5, 1.2, 1.9, 2.5))
    assert (s["selected_step"], s["best_step"]) == (20, 20)
    assert s["base_val_loss"] == 2.0 and s["val_loss_decrease"] == pytest.approx(0.8)


def test_later_checkpoint_just_inside_tolerance_wins():
    s = select(curve(2.0, 1.0, 1.05, 1.0999))
    assert s["selected_step"] == 30 and s["best_step"] == 10
    assert s["selected_val_loss"] == pytest.approx(1.0999)


def test_later_checkpoint_just_outside_tolerance_loses():
    s = select(curve(2.0, 1.0, 1.1001, 1.3))
    assert s["selected_step"] == 10


def test_exactly_at_tolerance_counts_as_inside():
    s = select(curve(2.0, 1.0, 1.0 + 0.1), tolerance=0.1)
    assert s["selected_step"] == 20


def test_ties_take_the_last():
    s = select(curve(2.0, 1.0, 1.0, 1.0))
    assert s["selected_step"] == 30 and s["best_step"] == 10


def test_step_zero_can_win():
    s = select(curve(1.0, 1.5, 2.0))
    assert s["selected_step"] == 0 and s["val_loss_decrease"] == 0


def test_no_validation_selects_final_step():
    s = select([{"step": 4, "val_loss": None}, {"step": 8, "val_loss": None}])
    assert s["selected_step"] == 8 and s["best_val_loss"] is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.01, 10, allow_nan=False), min_size=1, max_size=40),
       st.floats(0, 1))
def test_against_brute_force(losses, tol):
    rows = curve(*losses)
    best = min(losses)
    expected = max(r["step"] for r in rows if r["val_loss"] <= best + tol)
    assert select(rows, tol)["selected_step"] == expected
    assert not math.isnan(select(rows, tol)["selected_val_loss"])
