"""Experiment tracking of a training run as it trains (train.tracking: none | tensorboard).

Rank 0 only, offline: TensorBoard event files in the run's folder `<out>` itself, so that
`tensorboard --logdir results/train` names each run by its configuration (`7B/full-29`, `32B/lora`),
and the run's hyperparameters (size, configuration, subset, mode, lr, LoRA rank and alpha, ...) as
TensorBoard HPARAMS, so the grid's runs compare side by side against `val/best_loss`. Tracking is
job observability, like the progress bar: it is not in the rule's params nor in the run's
fingerprint or done-cache key, so switching it on or off reruns nothing and changes no result (tests/test_tracking.py). Scalars, per step:

  train/loss, train/lr, train/grad_norm, train/tokens_per_s        every optimizer step
  val/loss, val/best_loss, selection/kept_step, selection/bad      every evaluation

Observability never kills a training: a tracking folder that cannot be written (at the start or
later: a file in its place, no permission, a full disk) is a warning naming train.tracking, and the
training goes on untracked.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

KINDS = ("none", "tensorboard")
TRAIN_KEYS = {"train_loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
              "tokens_per_s": "train/tokens_per_s"}


class Tracker:
    """Logs nothing (train.tracking: none, or a rank other than 0)."""

    def train(self, step: int, row: dict) -> None:
        pass

    def evaluation(self, step: int, val_loss: float | None, best: float, kept_step: int | None, bad: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoard(Tracker):
    def __init__(self, log_dir: Path, first_step: int, hparams: dict | None = None):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run drops what a killed attempt logged after its resume state
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=first_step or None)
        if hparams:
            self.hparams(hparams)

    def hparams(self, values: dict) -> None:
        """The run's settings as TensorBoard HPARAMS (add_hparams's summaries, written into this run's
        folder instead of a sub-run of its own), against the metric val/best_loss."""
        from torch.utils.tensorboard.summary import hparams

        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()
                 if v is not None}
        for summary in hparams(clean, {"val/best_loss": 0.0}):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def train(self, step, row):
        for key, tag in TRAIN_KEYS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], step)

    def evaluation(self, step, val_loss, best, kept_step, bad):
        for tag, value in (("val/loss", val_loss), ("val/best_loss", best), ("selection/kept_step", kept_step),
                           ("selection/bad", bad)):
            if value is not None and value != float("inf"):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # an evaluation is seen at once by a TensorBoard watching the folder

    def close(self):
        self.writer.close()


def _warn(where: Path, e: Exception) -> None:
    print(f"WARNING: train.tracking: cannot write {where} ({type(e).__name__}: {e}); the training goes on "
          "untracked (fix the folder, or set train.tracking: none)", file=sys.stderr, flush=True)


class Guarded(Tracker):
    """A tracker whose first failure is a warning and switches tracking off for the rest of the run."""

    def __init__(self, inner: Tracker, where: Path):
        self.inner, self.where = inner, where

    def _call(self, name, *args):
        if self.inner is None:
            return
        try:
            getattr(self.inner, name)(*args)
        except Exception as e:  # noqa: BLE001  (any failure of observability, never the training's)
            inner, self.inner = self.inner, None
            _warn(self.where, e)
            if name != "close":
                with contextlib.suppress(Exception):
                    inner.close()

    def train(self, step, row):
        self._call("train", step, row)

    def evaluation(self, step, val_loss, best, kept_step, bad):
        self._call("evaluation", step, val_loss, best, kept_step, bad)

    def close(self):
        self._call("close")


def open_tracker(kind: str, out: Path, master: bool, first_step: int, hparams: dict | None = None) -> Tracker:
    if kind not in KINDS:
        raise SystemExit(f"--tracking must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "none" or not master:
        return Tracker()
    where = Path(out)
    try:
        return Guarded(TensorBoard(where, first_step, hparams), where)
    except Exception as e:  # noqa: BLE001
        _warn(where, e)
        return Tracker()


def run_hparams(out: Path, settings: dict) -> dict:
    """The hyperparameters a grid's runs differ in, plus the run's name (results/train/<size>/<config>)."""
    keep = ("mode", "subset", "lr", "lora_rank", "lora_alpha", "global_batch", "max_steps", "warmup_steps",
            "weight_decay", "max_seq_len", "seed", "deepspeed", "model", "format")
    return {"size": Path(out).parent.name, "configuration": Path(out).name,
            **{k: settings[k] for k in keep if settings.get(k) is not None}}
