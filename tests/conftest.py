import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
# snakemake and python of the running interpreter's venv, for the subprocess tests
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tests.slurm.fixtures import slurm_cluster  # noqa: E402,F401  (session fixture)

import pytest  # noqa: E402

from tests.slurm.cluster import slurm_installed  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _slurm_answers_plugin_probe(request):
    """Keep the real test SLURM up for the whole session where it is installed.

    snakemake-executor-plugin-slurm runs `scontrol show config` (10 s timeout) when it is
    imported, i.e. in EVERY snakemake call, local ones too. With SLURM's client installed
    but no controller answering, that costs 10 s per call; with the controller up, ~0.
    """
    if slurm_installed() and os.geteuid() == 0 and os.environ.get("SLURM_TESTS") != "off":
        request.getfixturevalue("slurm_cluster")


def build_demo_model(d: Path) -> Path:
    """The demo base model under d/base: random-init Qwen2 + a BPE tokenizer trained offline
    on 16 s1K-shaped rows and the demo tasks' text (make_demo.py, as the demo DAG builds it)."""
    import make_demo

    make_demo.main(["data", "--out", str(d / "s1k.jsonl"), "--rows", "16"])
    make_demo.main(["tokenizer", "--corpus", str(d / "s1k.jsonl"), str(ROOT / "workflow" / "tasks" / "demo"),
                    "--out", str(d / "tok")])
    make_demo.main(["model", "--tokenizer", str(d / "tok"), "--out", str(d / "base")])
    return d / "base"


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    """build_demo_model once per session (tests that change it copy it first)."""
    return build_demo_model(tmp_path_factory.mktemp("demo_model"))


def snakemake(workdir, *args, check=True):
    """snakemake with the local profile (as `make demo` runs it) in `workdir`."""
    import subprocess

    out = subprocess.run(["snakemake", "-s", str(ROOT / "Snakefile"), "--profile", str(ROOT / "profiles" / "local"),
                          "-d", str(workdir), *args], capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The whole demo DAG, run once per session (the `make demo` path); tests that change it copy it."""
    import time

    workdir = tmp_path_factory.mktemp("demo")
    t0 = time.time()
    snakemake(workdir)
    print(f"\ndemo DAG wall time: {time.time() - t0:.0f} s")
    return workdir


def copy_run(src: Path, dst: Path) -> Path:
    """A copy of a finished run (results/ and .snakemake/ metadata, mtimes kept)."""
    import shutil

    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete", "log"))
    return dst
