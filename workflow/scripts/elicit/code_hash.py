"""The sha256 of the code an Apptainer image bakes in (envs/elicit.def's %files that jobs run:
pyproject.toml, Snakefile, workflow/, resources/), so that planning can refuse a stale image.

envs/elicit.def records it at build time as the image label `org.elicit.code-sha256`
(`python -m elicit.code_hash /opt/elicit`); with `--sdm apptainer` planning reads the label
(`apptainer inspect --labels --json`) and compares it with the checkout's (`image_problem`).
Config files are not part of it: every setting reaches the jobs as a parameter."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

BAKED = ("pyproject.toml", "Snakefile", "workflow", "resources")
LABEL = "org.elicit.code-sha256"


def code_sha256(root: Path) -> str:
    """sha256 over the relative path and bytes of every file under BAKED (caches left out)."""
    h = hashlib.sha256()
    root = Path(root)
    for name in BAKED:
        top = root / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for p in files:
            rel = p.relative_to(root).as_posix()
            if "__pycache__" in p.parts or p.suffix == ".pyc" or ".egg-info" in rel:
                continue
            h.update(rel.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def image_label(image: Path) -> str | None:
    """The code hash an image was built with (its label); None where apptainer cannot tell."""
    try:
        out = subprocess.run(["apptainer", "inspect", "--labels", "--json", str(image)], capture_output=True,
                             text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    data = json.loads(out.stdout or "{}")
    labels = data.get("data", {}).get("attributes", {}).get("labels", data)
    return labels.get(LABEL)


def image_problem(image_sha: str | None, root: Path, image: str) -> str | None:
    """Why the image cannot run this checkout's code (None: it can)."""
    rebuild = f"rebuild it: apptainer build --force {image} envs/elicit.def"
    if not Path(image).exists():
        return f"no image at {image}: build it: apptainer build {image} envs/elicit.def"
    if image_sha is None:
        return (f"{image} carries no code hash (label {LABEL}; built before it was recorded, or apptainer "
                f"could not inspect it): it may run other code than this checkout; {rebuild}")
    here = code_sha256(root)
    if image_sha != here:
        return (f"{image} was built from other code (sha256 {image_sha[:12]}) than this checkout ({here[:12]}): its "
                f"jobs would run the step programs baked into it; {rebuild}")
    return None


if __name__ == "__main__":  # python -m elicit.code_hash ROOT  (envs/elicit.def, %post)
    print(code_sha256(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
