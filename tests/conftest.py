import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the step programs import as modules: pyproject pythonpath
# snakemake and python of the running interpreter's venv, for the subprocess tests
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

# Property tests draw the same examples on every run (derandomize: seeded from each test's name), and
# no example database replays what an earlier run happened to find: a test passes or fails by its
# code, never by the run (issue 29).
from hypothesis import settings as _hypothesis  # noqa: E402

from tests.slurm.cluster import slurm_installed  # noqa: E402
from tests.slurm.fixtures import slurm_cluster  # noqa: E402,F401  (session fixture)

_hypothesis.register_profile("deterministic", derandomize=True, database=None, print_blob=True)
_hypothesis.load_profile("deterministic")


@pytest.fixture(scope="session", autouse=True)
def _slurm_answers_plugin_probe(request):
    """Keep the real test SLURM up for the whole session where it is installed.

    snakemake-executor-plugin-slurm runs `scontrol show config` (10 s timeout) when it is
    imported, i.e. in EVERY snakemake call, local ones too. With SLURM's client installed
    but no controller answering, that costs 10 s per call; with the controller up, ~0.
    """
    if slurm_installed() and os.geteuid() == 0 and os.environ.get("SLURM_TESTS") != "off":
        request.getfixturevalue("slurm_cluster")


def child_env(threads: int = 1, **extra) -> dict:
    """The environment of a program a test starts: offline, `threads` OpenMP threads, and none of
    a launcher's rank variables (a test run under torchrun must not pass them on)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               **extra)
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def demo_config() -> dict:
    """config/demo.yaml, checked, the schema's defaults filled in (as the workflow sees it)."""
    import yaml

    from elicit.checks.config import check

    return check(yaml.safe_load((ROOT / "config" / "demo.yaml").read_text()))


def train_flags(**over) -> list[str]:
    """train.py's flags as the train rule builds them for the demo config (elicit/steps.py), with
    `over` on top (snake_case keys); the clock is not watched (stop_margin_min 0), no tracking."""
    from elicit import steps

    cfg = demo_config()
    return steps.argv({**steps.train_args(cfg, cfg["sizes"][0], "full-16"), "stop_margin_min": 0, "tracking": "none",
                        **over})


def lora_flags() -> list[str]:
    """The LoRA settings of the demo config as train.py flags (with `--mode lora`)."""
    from elicit import steps

    cfg = demo_config()
    return steps.argv({k: v for k, v in steps.train_args(cfg, cfg["sizes"][0], "lora").items()
                        if k.startswith("lora_")})


def eval_settings(layout: str = "single", backend: str = "hf-resumable") -> list[str]:
    """eval_cell.py's config-backed flags as the eval rule builds them for the demo config
    (elicit/steps.py), without the cells (--task/--seed), --max-gen-toks and --limit (each test
    passes its own), with batch size 1 and max length 512 for the tests' small runs and the backend
    hf-resumable (fixed batches; hf-cb, the default, is tested in test_eval_cb.py). For tests that
    call it directly; a flag given again later overrides (argparse)."""
    from elicit import steps

    cfg = demo_config()
    args = steps.eval_args(cfg, cfg["sizes"][0], layout=layout)
    del args["max_gen_toks"], args["limit"]
    return steps.argv({**args, "batch_size": 1, "backend": backend, "max_length": 512})


def build_demo_model(d: Path) -> Path:
    """The demo base model under d/base: random-init Qwen2 + a BPE tokenizer trained offline
    on 16 s1K-shaped rows and the demo tasks' text (make_demo.py, as the demo DAG builds it)."""
    import make_demo

    make_demo.main(["tiny", "--out", str(d)])
    return d / "base"


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    """build_demo_model once per session (tests that change it copy it first)."""
    return build_demo_model(tmp_path_factory.mktemp("demo_model"))


@pytest.fixture(scope="session")
def train_demo(tmp_path_factory) -> Path:
    """helpers.build_demo's tiny model and data, built once per session: six modules train on it
    (each built its own, ~15 s each)."""
    from tests.helpers import build_demo

    return build_demo(tmp_path_factory.mktemp("train_demo"))


@pytest.fixture(scope="module")
def demo(train_demo) -> Path:
    """train_demo under its short name (the training tests' `demo`; test_demo_dag.py's own `demo`, a
    copy of the demo run, overrides it there)."""
    return train_demo


@pytest.fixture(scope="session")
def train_reference(train_demo, tmp_path_factory) -> dict:
    """helpers.run_reference: train.py's uninterrupted run, once per session (test_train, test_damaged_models and
    test_train_deepspeed compare with it; each ran its own)."""
    from tests.helpers import run_reference

    return run_reference(train_demo, tmp_path_factory.mktemp("ref") / "run")


@pytest.fixture(scope="module")
def reference(train_reference) -> dict:
    """train_reference under its short name; tests that change it copy it."""
    return train_reference


@pytest.fixture(scope="module")
def chaos(tmp_path_factory, demo_model) -> Path:
    """The demo base model with its matrices re-drawn at a large scale (N(0, 0.3)): its greedy
    answers differ from prompt to prompt (the demo model's repeat one token), so comparing two
    backends' answers means something."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = tmp_path_factory.mktemp("cb_demo")
    model = AutoModelForCausalLM.from_pretrained(demo_model, dtype=torch.float32)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    model.save_pretrained(d / "chaos")
    AutoTokenizer.from_pretrained(demo_model).save_pretrained(d / "chaos")
    return d / "chaos"


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


def table_rows(out: str) -> dict[str, str]:
    """{check: PASS | FAIL | SKIP} of an acceptance script's printed table (bench/gpu_*acceptance.py)."""
    return {line[6:].split("  ")[0].strip(): line[:5].strip() for line in out.splitlines()
            if line[:5].strip() in ("PASS", "FAIL", "SKIP")}
