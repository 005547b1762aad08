"""The base and skyline models the workflow fetched (fetch_hub: a hub snapshot's files recorded in
results/hub/models/<size>/<role>.json) or built (make_demo.py: <model>/weights.json), and their files
checked against that record: by sizes at plan time (elicit/checks/integrity.py), by sha256 before a job loads
one (train.py, elicit/eval/cell.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from elicit.atomic import CorruptFile, read_json, write_json
from elicit.provenance import WEIGHTS
from elicit.train.checkpoints import file_manifest, manifest_problems


def write_weights(d: Path) -> None:
    """Record the sizes and sha256 of a built model's files in d/weights.json (make_demo.py)."""
    write_json(Path(d) / WEIGHTS, {"files": file_manifest(d)}, checksum=True)


@dataclass
class Weights:
    """A base/skyline model the workflow fetched or built, and what was recorded of its files."""
    path: Path  # the model directory: a hub snapshot or a built model
    files: dict | None  # {relative path: {size, sha256}}; None: the record itself is damaged
    fix: str  # what to do; FILE stands for the damaged file
    repo: str | None = None  # hub id and revision of a fetched snapshot
    revision: str | None = None
    error: str = ""

    def problems(self, full: bool) -> list[str]:
        if self.files is None:
            return [f"{self.error}\n    fix: {self.fix}"]
        return [f"{m}\n    fix: {self.fix.replace('FILE', m.split(':', 1)[0])}"
                for m in manifest_problems(self.path, self.files, full)]


def recorded_weights(results: Path) -> list[Weights]:
    """Every fetched hub snapshot (results/hub/models/*/*.json with its files) and built demo model
    (results/demo/models/*/*/weights.json)."""
    out = []
    for marker in sorted((results / "hub" / "models").glob("*/*.json")):
        try:
            rec = read_json(marker, ("repo",))
        except CorruptFile:
            continue  # reported by result_problems
        if rec.get("files") and rec.get("snapshot"):
            rev = f" --revision {rec['revision']}" if rec.get("revision") else ""
            fix = ("delete the damaged file from the HF cache (rm \"$(readlink -f FILE)\"), then fetch again: "
                   f"python -m elicit.run fetch_hub model --repo {rec['repo']}{rev} --out {marker}")
            out.append(Weights(Path(rec["snapshot"]), rec["files"], fix, rec["repo"], rec.get("revision") or None))
    for manifest in sorted((results / "demo" / "models").glob(f"*/*/{WEIGHTS}")):
        fix = f"rm -rf {manifest.parent}; the next run rebuilds it (`snakemake {manifest.parent}`)"
        try:
            out.append(Weights(manifest.parent, read_json(manifest, ("files",))["files"], fix))
        except CorruptFile as e:
            out.append(Weights(manifest.parent, None, fix, error=str(e)))
    return out


def weights_problems(results: Path) -> list[str]:
    """Plan time: every fetched or built base/skyline model's files against their recorded sizes (never
    their hashes: a 65 GB snapshot is hashed at fetch and before a job loads it, not on every dry-run)."""
    return [m for w in recorded_weights(results) if w.path.exists() for m in w.problems(full=False)]


def model_weights_problems(source: str, revision: str | None, results: Path = Path("results")) -> list[str]:
    """Before a job loads a base or skyline model: its files against their recorded sha256 (a built model's
    weights.json, or the snapshot fetch_hub recorded for this hub id and revision); [] when nothing was
    recorded (a model the workflow neither fetched nor built)."""
    path = Path(source)
    for w in recorded_weights(results):
        if (w.path.resolve() == path.resolve()) if path.is_dir() else \
                (w.repo == source and w.revision == (revision or None)):
            return w.problems(full=True)
    return []  # a model the workflow did not fetch or build where it keeps them (a test's, a benchmark's copy)
