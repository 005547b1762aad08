"""train.tracking: tensorboard writes event files under the run's folder that TensorBoard reads back,
and tracking changes neither the training's result nor its done-cache key."""
import json
import subprocess

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.helpers import jsonl_rows, train_cmd, train_env

SHORT = ["--max-steps", "4", "--eval-every", "2"]


def _train(demo_dir, out, tracking):
    subprocess.run(train_cmd(demo_dir, out, [*SHORT, "--tracking", tracking, "--progress", "false"]), check=True,
                   env=train_env(), capture_output=True, timeout=600)
    return jsonl_rows(out / "metrics.jsonl")


@pytest.mark.slow  # a contributor's fast loop (make test-fast) leaves it to make test
def test_tensorboard_scalars_read_back(demo, tmp_path):
    plain = _train(demo, tmp_path / "plain", "none")
    tracked = _train(demo, tmp_path / "tracked", "tensorboard")
    assert not list((tmp_path / "plain").glob("events.out.tfevents.*"))
    clock = ("tokens_per_s", "step_tokens_per_s", "peak_gpu_mem_gib")  # timings, not the training
    timeless = [[{k: v for k, v in r.items() if k not in clock} for r in rows] for rows in (plain, tracked)]
    assert json.dumps(timeless[0], sort_keys=True) == json.dumps(timeless[1], sort_keys=True)  # the same training
    assert sorted(p.name for p in (tmp_path / "plain" / ".done").iterdir()) == \
        sorted(p.name for p in (tmp_path / "tracked" / ".done").iterdir())  # the same finished-work key

    events = EventAccumulator(str(tmp_path / "tracked"))  # the run's folder: TensorBoard names the run by it
    events.Reload()
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(events.PluginTagToContent("hparams")[
        "_hparams_/session_start_info"]).session_start_info.hparams
    assert start["configuration"].string_value == "tracked" and start["mode"].string_value == "full"
    assert start["lr"].number_value > 0 and start["subset"].string_value
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


def test_a_tracker_that_cannot_start_warns_and_trains_on(demo, tmp_path):
    """A tracker failing at the training's start (before: NotADirectoryError from a file where the
    tracking folder went; now the event files go into the run folder itself, so here a broken
    tensorboard install, shadowed on PYTHONPATH) must never kill a training: a warning names train.tracking."""
    import os

    out, shadow = tmp_path / "run", tmp_path / "shadow" / "tensorboard"
    out.mkdir()
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise OSError(30, 'Read-only file system')\n")
    env = train_env()
    env["PYTHONPATH"] = os.pathsep.join([str(shadow.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(train_cmd(demo, out, ["--max-steps", "2", "--eval-every", "2", "--tracking", "tensorboard",
                                           "--progress", "false"]),
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train.tracking" in proc.stderr and "training goes on untracked" in proc.stderr, proc.stderr[-3000:]
    assert [r["step"] for r in jsonl_rows(out / "metrics.jsonl")] == [0, 2]


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
