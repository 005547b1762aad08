"""train.tracking: tensorboard writes event files under the run's folder that TensorBoard reads back,
and tracking changes neither the training's result nor its done-cache key."""
import json
import subprocess

import pytest

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.test_train import _cmd, _env, _rows, demo  # noqa: F401  (demo: the module's fixture)

SHORT = ["--max-steps", "4", "--eval-every", "2"]


def _train(demo_dir, out, tracking):
    subprocess.run(_cmd(demo_dir, out, [*SHORT, "--tracking", tracking, "--progress", "false"]), check=True,
                   env=_env(), capture_output=True, timeout=600)
    return _rows(out / "metrics.jsonl")


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_tensorboard_scalars_read_back(demo, tmp_path):  # noqa: F811
    plain = _train(demo, tmp_path / "plain", "none")
    tracked = _train(demo, tmp_path / "tracked", "tensorboard")
    assert not (tmp_path / "plain" / "tracking").exists()
    clock = ("tokens_per_s", "step_tokens_per_s", "peak_gpu_mem_gib")  # timings, not the training
    timeless = [[{k: v for k, v in r.items() if k not in clock} for r in rows] for rows in (plain, tracked)]
    assert json.dumps(timeless[0], sort_keys=True) == json.dumps(timeless[1], sort_keys=True)  # the same training
    assert sorted(p.name for p in (tmp_path / "plain" / ".done").iterdir()) == \
        sorted(p.name for p in (tmp_path / "tracked" / ".done").iterdir())  # the same finished-work key

    events = EventAccumulator(str(tmp_path / "tracked" / "tracking" / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "val/loss", "val/best_loss",
            "selection/kept_step", "selection/bad"} <= tags
    loss = {e.step: e.value for e in events.Scalars("train/loss")}
    assert sorted(loss) == [1, 2, 3, 4]
    val = {e.step: e.value for e in events.Scalars("val/loss")}
    want = {r["step"]: r["val_loss"] for r in tracked if r.get("val_loss") is not None}
    assert sorted(val) == sorted(want) == [0, 2, 4]
    for step, value in want.items():  # float32 in the event file
        assert abs(val[step] - value) <= 1e-6 * max(1.0, abs(value))
    for r in tracked:
        if r.get("train_loss") is not None:
            assert abs(loss[r["step"]] - r["train_loss"]) <= 1e-6 * max(1.0, abs(r["train_loss"]))


def test_unwritable_tracking_folder_warns_and_trains_on(demo, tmp_path):  # noqa: F811
    """A file where the tracking folder goes (or a read-only folder) raised NotADirectoryError at the
    training's start: observability must never kill a training. A warning names train.tracking."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "tracking").write_text("not a folder\n")
    proc = subprocess.run(_cmd(demo, out, ["--max-steps", "2", "--eval-every", "2", "--tracking", "tensorboard",
                                           "--progress", "false"]),
                          env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train.tracking" in proc.stderr and "training goes on untracked" in proc.stderr, proc.stderr[-3000:]
    assert [r["step"] for r in _rows(out / "metrics.jsonl")] == [0, 2]


def test_a_tracker_that_fails_later_is_dropped_with_a_warning(tmp_path, capsys):
    """A write that fails mid-training (disk full, folder removed) switches tracking off, once, loudly."""
    from elicit.train.tracking import open_tracker

    tracker = open_tracker("tensorboard", tmp_path, True, 0)

    def broken(*a, **k):
        raise OSError(28, "No space left on device")

    tracker.inner.writer.add_scalar = broken
    tracker.train(1, {"train_loss": 1.0})
    tracker.train(2, {"train_loss": 1.0})
    tracker.evaluation(2, 1.0, 1.0, 2, 0)
    tracker.close()
    err = capsys.readouterr().err
    assert err.count("WARNING: train.tracking") == 1 and "No space left on device" in err
