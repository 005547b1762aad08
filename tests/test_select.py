"""The selection rule: the last checkpoint within train.tolerance (0.1) nats of the best validation loss.

One rule, two uses: `select` on a finished run, `Keeper` online in train.py (which keeps only the
checkpoint the rule can still select); both must land on the same step.
"""
import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from elicit.train.checkpoints import Keeper, select
from tests.conftest import ROOT

TOL = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["train"]["tolerance"]  # the paper's 0.1


def curve(*losses, every=10):
    return [{"step": i * every, "val_loss": loss} for i, loss in enumerate(losses)]


def test_picks_best_when_later_ones_are_worse():
    s = select(curve(2.0, 1.5, 1.2, 1.9, 2.5), TOL)
    assert (s["selected_step"], s["best_step"]) == (20, 20)
    assert s["base_val_loss"] == 2.0 and s["val_loss_decrease"] == pytest.approx(0.8)


def test_later_checkpoint_just_inside_tolerance_wins():
    s = select(curve(2.0, 1.0, 1.05, 1.0999), TOL)
    assert s["selected_step"] == 30 and s["best_step"] == 10
    assert s["selected_val_loss"] == pytest.approx(1.0999)


def test_later_checkpoint_just_outside_tolerance_loses():
    s = select(curve(2.0, 1.0, 1.1001, 1.3), TOL)
    assert s["selected_step"] == 10


def test_exactly_at_tolerance_counts_as_inside():
    s = select(curve(2.0, 1.0, 1.0 + TOL), TOL)
    assert s["selected_step"] == 20


def test_ties_take_the_last():
    s = select(curve(2.0, 1.0, 1.0, 1.0), TOL)
    assert s["selected_step"] == 30 and s["best_step"] == 10


def test_step_zero_can_win():
    s = select(curve(1.0, 1.5, 2.0), TOL)
    assert s["selected_step"] == 0 and s["val_loss_decrease"] == 0


def test_no_validation_selects_final_step():
    s = select([{"step": 4, "val_loss": None}, {"step": 8, "val_loss": None}], TOL)
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


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.5, 0.6, 0.65, 0.7, 1.0, 1.2, 2.0]) | st.floats(0.01, 10, allow_nan=False),
                min_size=1, max_size=40), st.sampled_from([0.0, 0.05, 0.1, 0.5]))
def test_online_keeper_ends_on_the_step_select_picks(losses, tol):
    """train.py keeps a checkpoint only when Keeper.observe says so (and drops the earlier one):
    the one it ends with is the one `select` picks from the whole curve, ties included."""
    keeper, kept = Keeper(tol), None
    for row in curve(*losses):
        if keeper.observe(row["step"], row["val_loss"]):
            kept = row["step"]
    chosen = select(curve(*losses), tol)
    assert kept == chosen["selected_step"] and keeper.best_step == chosen["best_step"]
