"""Issue 19: a diverged training never becomes the finetune (train.py stops on a non-finite loss or
gradient norm, naming step, value and the setting to change; selection never picks a non-finite
row; a run whose only finite evaluation is step 0 is refused)."""
from __future__ import annotations

import json
import math
import subprocess

import pytest

from elicit.train.checkpoints import Diverged, Keeper, select
from tests.helpers import train_cmd, train_env

NAN, INF = float("nan"), float("inf")


def test_selection_never_picks_a_non_finite_row():
    rows = [{"step": 0, "val_loss": 3.0}, {"step": 2, "val_loss": 2.0}, {"step": 4, "val_loss": INF},
            {"step": 6, "val_loss": NAN}]
    assert select(rows, 0.1)["selected_step"] == 2


@pytest.mark.parametrize("bad", [NAN, INF])
def test_only_step_0_finite_is_refused(bad):
    rows = [{"step": 0, "val_loss": 3.0}] + [{"step": s, "val_loss": bad} for s in (2, 4)]
    with pytest.raises(Diverged, match=r"step\(s\) \[2, 4\].*train\.lr"):
        select(rows, 0.1)


def test_keeper_never_keeps_a_non_finite_loss():
    k = Keeper(0.1)
    assert not k.observe(0, INF) and not k.observe(2, NAN) and k.bad == 2 and k.candidate is None
    assert k.observe(4, 1.0) and k.candidate == 4 and math.isfinite(k.best)


def test_select_checkpoint_refuses_a_diverged_run(tmp_path):
    import select_checkpoint

    run = tmp_path / "train"
    (run / "checkpoints" / "step-0").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"step": 0, "val_loss": 3.0}, {"step": 10, "val_loss": NAN})))
    with pytest.raises(SystemExit, match="diverged.*refusing to publish the untrained model"):
        select_checkpoint.main(["--train-dir", str(run), "--out", str(tmp_path / "m"), "--tolerance", "0.1"])
    assert not (tmp_path / "m" / "model").exists()


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_training_with_a_huge_lr_stops_naming_step_value_and_setting(demo, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(train_cmd(demo, out, ["--lr", "1000", "--max-grad-norm", "1e9"]), env=train_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "diverged at step" in proc.stderr and "Lower train.lr (now 1000" in proc.stderr, proc.stderr[-2000:]
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoints").exists()  # nothing published
