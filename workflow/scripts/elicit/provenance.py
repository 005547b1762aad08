"""What produced a result: package versions, hub commits, and content fingerprints.

Every resumable artefact (the evaluation sidecar, the training resume state) is keyed by these
fingerprints, never by a path: a model retrained under the same path, a re-split table or a
changed setting gives another key, and the stale state is discarded.

  model_fingerprint(source, revision)
      hub id   -> "hub:<repo>@<commit>" with the commit the local HF cache resolves the
                  revision to (offline; the fetch rule downloaded it on the submit host);
      local dir written by this workflow (train.py writes provenance.json into every
                  checkpoint it keeps) -> that file's training-run fingerprint and step;
      any other local dir -> sha256 of its weight, config and tokenizer files.
  versions()   the packages whose versions change results.
"""
from __future__ import annotations

import hashlib
import json
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from elicit import grid

PACKAGES = ("lm-eval", "transformers", "torch", "peft", "deepspeed", "accelerate", "datasets",
            "tokenizers")
SHA = re.compile(r"^[0-9a-f]{40}$")
MODEL_FILES = ("*.safetensors", "*.bin", "*.json", "*.model", "*.txt", "*.jinja")
PROVENANCE = "provenance.json"
# A base or skyline model's own record of its files (sizes, sha256), written where it is built
# (make_demo.py) and verified before use (elicit/checks/integrity.py); not part of the model's fingerprint.
WEIGHTS = "weights.json"


def versions() -> dict:
    out = {}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def sha256_file(path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def is_commit(revision) -> bool:
    return bool(revision) and bool(SHA.match(str(revision)))


def hub_commit(repo: str, revision: str | None = None, repo_type: str = "model") -> str | None:
    """The commit the local HF cache holds for repo@revision (offline), else None."""
    if is_commit(revision):
        return revision
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo, revision=revision or None, repo_type=repo_type,
                                 local_files_only=True)
    except Exception:  # noqa: BLE001 -- not in the cache: unknown, reported as None
        return None
    name = Path(path).name
    return name if is_commit(name) else None


def dir_fingerprint(path: Path) -> str:
    """sha256 over the names and contents of a model directory's files."""
    h = hashlib.sha256()
    files = sorted({p for pat in MODEL_FILES for p in path.glob(pat) if p.name not in (PROVENANCE, WEIGHTS)})
    for p in files:
        h.update(p.name.encode() + b"\0" + sha256_file(p).encode() + b"\0")
    return h.hexdigest()


def model_fingerprint(source: str, revision: str | None = None) -> dict:
    """{"source", "revision", "resolved", "fingerprint"} of a local model dir or a hub id."""
    path = Path(source)
    if path.is_dir():
        prov = path / PROVENANCE
        if prov.exists():
            p = json.loads(prov.read_text())
            fp = f"train:{p['train_fingerprint']}@step-{p['step']}"
        else:
            fp = f"dir:{dir_fingerprint(path)}"
        return {"source": source, "revision": None, "resolved": None, "fingerprint": fp}
    commit = hub_commit(source, revision)
    fp = f"hub:{source}@{commit}" if commit else f"hub:{source}@{revision or 'main'}:unresolved"
    return {"source": source, "revision": revision, "resolved": commit, "fingerprint": fp}


def is_local(source: str) -> bool:
    """A model or data source is a local path if it exists or is spelled like one."""
    return (Path(source).exists() or source.startswith(("results/", "/", "./", "../"))
            or source.endswith((".parquet", ".jsonl", ".json")))


def _recorded(path: Path, key: str):
    try:
        return json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def floating_summary(lines: list[str]) -> str | None:
    """Planning's one line about `unpinned`'s lines: how many revisions float, and the command that
    pins them all (each one's key and commit: its --dry-run)."""
    if not lines:
        return None
    kinds = {"data": sum("pin it in config: data." in x for x in lines),
             "models": sum("pin it in config: models." in x for x in lines),
             "task datasets": sum("pin it in config: eval." in x for x in lines)}
    what = ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
    return (f"{len(lines)} hub revisions float ({what}): `python -m elicit.run pin_revisions <config file>` "
            "pins them in it, on a machine with hub access (--dry-run: each key and commit)")


def unpinned(config: dict, results: Path = Path("results")) -> list[str]:
    """One line per hub id of `config` whose revision is not a commit sha, with the YAML line to
    paste: the commit the fetch rules recorded, once they have run."""
    def line(key: str, what: str, commit, fetched_by: str) -> str:
        pin = commit if is_commit(commit) else f"<commit; `snakemake --until {fetched_by}` fetches it, then this line shows it>"
        return f"unpinned hub revision: {what} floats; pin it in config: {key}: {pin}"

    out = []
    d = config["data"]
    if not is_local(d["source"]) and not is_commit(d.get("revision")):
        commit = _recorded(Path(grid.data_meta(results)), "resolved_revision")
        out.append(line("data.revision", f"{d['source']}@{d.get('revision') or 'main'}", commit, "fetch_data"))
    for size in config["sizes"]:
        m = config["models"][size]
        for role in ("base", "skyline"):
            src, rev = m[role], m.get(f"{role}_revision")
            if is_local(src) or is_commit(rev):
                continue
            commit = _recorded(results / "hub" / "models" / size / f"{role}.json", "commit")
            out.append(line(f"models.{size}.{role}_revision", f"{src}@{rev or 'main'}", commit, "fetch_model"))
    pins = config["eval"].get("task_revisions") or {}
    fetched = _recorded(results / "hub" / "tasks.json", "datasets") or {}
    for task in config["eval"]["tasks"]:
        if is_commit(pins.get(task)) or config["eval"].get("include_path") and not fetched:
            continue  # local task files (the demo): nothing on the hub, unless fetch says otherwise
        source = (fetched.get(task) or {}).get("dataset")
        if fetched and source is None:
            continue  # fetched: its data are local
        what = f"task {task}'s dataset" + (f" {source['path']}" if source else "")
        out.append(line(f"eval.task_revisions.{task}", what, (source or {}).get("resolved"), "fetch_tasks"))
    return out
