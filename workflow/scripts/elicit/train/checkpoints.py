"""Checkpoints: the paper's selection rule, keeping only what it can still select, the resume state.

The rule (`train.tolerance`, in nats): the LAST checkpoint whose validation loss is within
`tolerance` of the best one. `select` applies it to a finished run's metrics; `Keeper` applies
it online while training, so that only one checkpoint is ever kept: when a later evaluation
qualifies, the earlier one can never be "the last within tolerance" again, and one that does
not qualify never will, since the best loss only falls. Both end on the same step.

Resume state (`save_resume` / `load_resume`): model and optimizer through the engine
(elicit/train/engine.py), RNG, step and the Keeper's bookkeeping, written to a temporary directory and
renamed: all of it or none of it.
"""
from __future__ import annotations

import math
import os
import random
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

from elicit import done_cache, grid
from elicit.atomic import atomic_dir, read_json, read_jsonl, replace_dir, write_json, write_jsonl
from elicit.provenance import PROVENANCE, WEIGHTS, sha256_file


def within(loss: float, best: float, tolerance: float) -> bool:
    """The one comparison of the rule: is `loss` close enough to the best to be selected?"""
    return loss <= best + tolerance


class Diverged(ValueError):
    """A run whose losses went non-finite: nothing of it may be published as a finetune."""


def finite(x) -> bool:
    return x is not None and math.isfinite(x)


def select(rows: list[dict], tolerance: float) -> dict:
    """The selection rule on a finished run's rows of {step, val_loss}; a non-finite loss is never
    selected, and a run whose only finite evaluation is step 0 (the untrained model) is Diverged."""
    evals = [(r["step"], r["val_loss"]) for r in rows if finite(r.get("val_loss"))]
    bad = [r["step"] for r in rows if r.get("val_loss") is not None and not finite(r["val_loss"])]
    if bad and all(step == 0 for step, _ in evals):
        raise Diverged(f"the run diverged: validation loss non-finite at step(s) {bad[:5]}, no finite "
                       "evaluation after step 0; refusing to publish the untrained model as a finetune "
                       "(lower train.lr, or lora.lr for the LoRA, and rerun)")
    if not evals:  # no validation (LoRA on every row): the final step
        last = max(r["step"] for r in rows)
        return {"selected_step": last, "best_step": None, "best_val_loss": None,
                "selected_val_loss": None, "base_val_loss": None, "val_loss_decrease": None}
    best_step, best = min(evals, key=lambda e: (e[1], e[0]))
    selected_step, selected = max((e for e in evals if within(e[1], best, tolerance)), key=lambda e: e[0])
    base = next((loss for step, loss in evals if step == 0), None)
    return {"selected_step": selected_step, "selected_val_loss": selected,
            "best_step": best_step, "best_val_loss": best, "base_val_loss": base,
            "val_loss_decrease": None if base is None else base - selected, "tolerance": tolerance}


def divergence(step: int, values: dict, lr_key: str, lr: float) -> str | None:
    """train.py's stop message when a loss or gradient norm of `values` is non-finite, else None."""
    bad = {k: v for k, v in values.items() if v is not None and not math.isfinite(v)}
    if not bad:
        return None
    return (f"train: diverged at step {step}: {', '.join(f'{k}={v}' for k, v in bad.items())}; nothing is "
            f"published. Lower {lr_key} (now {lr:g}, e.g. 10x lower) and rerun the plain command")


@dataclass
class Keeper:
    """The selection rule online; `bad` counts evaluations outside tolerance since the last kept one."""
    tolerance: float
    best: float = math.inf
    best_step: int | None = None
    candidate: int | None = None  # the kept step
    bad: int = 0

    @classmethod
    def saved(cls, state: dict) -> Keeper:
        """The Keeper of a resume state (one saved before a field was dropped, too)."""
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state})

    def observe(self, step: int, loss: float) -> bool:
        """Record an evaluation; True when its checkpoint is to be kept (and the earlier one dropped).
        A non-finite loss is never kept (inf <= inf + tolerance would hold at the first evaluation)."""
        if not math.isfinite(loss):
            self.bad += 1
            return False
        if loss < self.best:  # a tie keeps the earlier best, as `select` does
            self.best, self.best_step = loss, step
        if within(loss, self.best, self.tolerance):
            self.bad, self.candidate = 0, step
            return True
        self.bad += 1
        return False


# ----------------------------------------------------------------------------- on disk
def checkpoint_count(ckpt_dir: Path) -> int:
    """Checkpoint directories on disk, half-written (.tmp-step-*) ones included."""
    return len(grid.step_dirs(ckpt_dir, partial=True))


def keep_only(ckpt_dir: Path, step: int) -> None:
    """Remove every checkpoint but step-<step>."""
    for p in grid.step_dirs(ckpt_dir):
        if p != grid.step_dir(ckpt_dir, step):
            shutil.rmtree(p, ignore_errors=True)


def publish(out: Path, work: Path) -> None:
    """Move the surviving checkpoint and the metrics from <out>/work into the declared outputs."""
    src, dst = grid.run_outputs(work), grid.run_outputs(out)
    with atomic_dir(dst[grid.CHECKPOINTS]) as tmp:
        for p in grid.step_dirs(src[grid.CHECKPOINTS]):
            os.replace(p, tmp / p.name)
    write_jsonl(dst[grid.METRICS], read_jsonl(src[grid.METRICS]))
    for prov in (c / PROVENANCE for c in grid.step_dirs(dst[grid.CHECKPOINTS])):  # its metrics, its files
        write_json(prov, {**read_json(prov), "metrics_sha256": sha256_file(dst[grid.METRICS]),
                          "files": file_manifest(prov.parent)}) if prov.exists() else None
    shutil.rmtree(work, ignore_errors=True)


def restore_finished(out: Path, key: str, master: bool) -> bool:
    """A finished run kept under <out>/.done/<key> (elicit/done_cache.py): its outputs linked back by
    rank 0; False when there is none, or when its checkpoint is damaged (then: train again)."""
    done = Path(out) / grid.DONE
    if not (done / key / done_cache.COMPLETE).exists():
        return False
    damaged = checkpoint_problems(done / key / grid.CHECKPOINTS, full=True)
    if damaged:  # hard links of a damaged published checkpoint
        print("finished run found but damaged, training again:\n  " + "\n  ".join(damaged), flush=True)
        return False
    if master:
        done_cache.restore(done, key, grid.run_outputs(out))
        print(f"finished run with the same inputs, settings and code found ({done / key}): "
              "restored, nothing retrained", flush=True)
    return True


def store_finished(out: Path, key: str) -> None:
    """Keep the published outputs under <out>/.done/<key>, for restore_finished."""
    done_cache.store(Path(out) / grid.DONE, key, grid.run_outputs(out))


def copy_tree(src: Path, dst: Path) -> None:
    """Copy every file of src under dst. A copy, not hard links: a damaged published model then
    leaves the checkpoint intact to re-publish from (the price: the published models' size again
    on disk, about 0.7 TB for the paper grid; README "Damaged models")."""
    for p in sorted(src.rglob("*")):
        target = dst / p.relative_to(src)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)


def file_manifest(d: Path) -> dict[str, dict]:
    """{relative path: {size, sha256}} of a model directory's files (its provenance.json and weights.json
    aside); a hub snapshot's symlinks are followed to their blobs."""
    return {str(p.relative_to(d)): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(Path(d).rglob("*")) if p.is_file() and p.name not in (PROVENANCE, WEIGHTS)}


def manifest_problems(d: Path, files: dict, full: bool) -> list[str]:
    """What differs between directory d and the manifest its producer wrote: sizes always (cheap,
    at plan time), the sha256 too when `full` (before loading)."""
    out = []
    for rel, want in sorted(files.items()):
        p = Path(d) / rel
        if not p.is_file():
            out.append(f"{p}: missing")
        elif p.stat().st_size != want["size"]:
            out.append(f"{p}: {p.stat().st_size} bytes, its producer wrote {want['size']}")
        elif full and sha256_file(p) != want["sha256"]:
            out.append(f"{p}: sha256 differs from the one its producer recorded")
    return out


def checkpoint_problems(ckpt_root: Path, full: bool) -> list[str]:
    """Every kept step-N under ckpt_root against the manifest in its provenance.json."""
    return [m for ckpt in grid.step_dirs(ckpt_root) if (ckpt / PROVENANCE).exists()
            for m in manifest_problems(ckpt, read_json(ckpt / PROVENANCE).get("files") or {}, full)]


def published_model_problems(model: Path, full: bool = True) -> list[str]:
    """A published model (results/models/<size>/<config>/model) against the manifest in its
    selection.json; [] for any other model path (hub ids, base models)."""
    sel = Path(model).parent / "selection.json"
    if Path(model).name != "model" or not sel.exists():
        return []
    files = read_json(sel).get("files")
    return manifest_problems(Path(model), files, full) if files else []


# ----------------------------------------------------------------------------- resume state
def rng_state() -> dict:
    import torch

    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(rng: dict) -> None:
    import torch

    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def save_resume(work: Path, engine, blob: dict) -> None:
    """<work>/resume: the engine's state and `blob` (step, bookkeeping, metrics) plus the RNG.
    Every rank calls it (DeepSpeed writes a shard per rank into the same temporary directory,
    hence not atomic_dir: every rank must know its name)."""
    import torch

    ranks, tmp = engine.ranks, work / f".tmp-{grid.RESUME}"
    if ranks.master:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    ranks.barrier()
    blob = {**blob, "rng": rng_state(), **engine.save_state(tmp)}
    ranks.barrier()
    if ranks.master:
        torch.save(blob, tmp / "state.pt")
        replace_dir(tmp, work / grid.RESUME)
    ranks.barrier()


def load_resume(work: Path) -> dict | None:
    """The saved blob, or None when there is no resume state."""
    import torch

    path = work / grid.RESUME / "state.pt"
    return torch.load(path, weights_only=True) if path.exists() else None


def restore(work: Path, engine, saved: dict, lora: bool) -> None:
    """Model, optimizer and RNG back to the saved step."""
    engine.load_state(work / grid.RESUME, saved, lora)
    set_rng_state(saved["rng"])
