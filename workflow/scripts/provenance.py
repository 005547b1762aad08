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

PACKAGES = ("lm-eval", "transformers", "torch", "peft", "deepspeed", "accelerate", "datasets",
            "tokenizers")
SHA = re.compile(r"^[0-9a-f]{40}$")
MODEL_FILES = ("*.safetensors", "*.bin", "*.json", "*.model", "*.txt", "*.jinja")
PROVENANCE = "provenance.json"


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
    files = sorted({p for pat in MODEL_FILES for p in path.glob(pat) if p.name != PROVENANCE})
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
