"""The grid of the paper, in one place: configurations, their labels and order, result paths.

A configuration is `base`, `skyline`, `lora` or `full-<n>` (a full finetune on the nested subset of
n training examples); its kind is the name without `-<n>`. Every result of a cell lives at a path
built here; the Snakefile's rules, the step programs and the checks all use these functions.
"""
from __future__ import annotations

from pathlib import Path

KINDS = ("base", "skyline", "lora", "full")  # the table's order
ORDER = {kind: i for i, kind in enumerate(KINDS)}
REFERENCES = ("base", "skyline")
VARIANT = "(?:@[a-z0-9][a-z0-9.]*(?:-[a-z0-9.]+)*)?"  # a variant's cell: `lora@lora-alpha1` (elicit/variants.py)
CONFIG_PATTERN = "(?:base|skyline|lora|full-[0-9]+)" + VARIANT
TRAINED_PATTERN = "(?:lora|full-[0-9]+)" + VARIANT
LABELS = {"base": "Qwen2.5-Instruct (base)", "skyline": "DeepSeek-R1-Distill", "lora": "LoRA",
          "full": "Full finetune"}
SHORT = {"base": "Base", "skyline": "Skyline", "lora": "LoRA", "full": "Full"}
PAPER_LABELS = dict(LABELS)
SIZE_LABELS: dict[str, dict[str, str]] = {}  # a size's own base/skyline names (models.<size>.labels)
PAPER_TABLE = "resources/paper/table1.csv"  # the paper's Table 1, relative to the checkout (elicit.repo_path)


def set_labels(labels: dict) -> None:
    """The config's `labels` (e.g. the demo's "Tiny random base (demo)"): the paper's names otherwise;
    under `sizes`, a size's own names of its base and skyline (`size_labels`: a grid of two families)."""
    LABELS.clear()
    LABELS.update({**PAPER_LABELS, **{k: v for k, v in labels.items() if k in PAPER_LABELS and v}})
    SIZE_LABELS.clear()
    SIZE_LABELS.update({str(s): {k: v for k, v in own.items() if k in REFERENCES and v}
                        for s, own in (labels.get("sizes") or {}).items()})


def size_labels(config: dict) -> dict:
    """The config's `labels`, plus `sizes: {size: models.<size>.labels}` for the sizes that set them
    (none set: the labels alone, so the paper's aggregate command is unchanged)."""
    own = {s: m["labels"] for s, m in config["models"].items() if m.get("labels")}
    return {**config["labels"], "sizes": own} if own else dict(config["labels"])


def trained(subsets) -> list[str]:
    """LoRA, then the full finetunes from the largest subset down (the Snakefile's order)."""
    return ["lora"] + [f"full-{n}" for n in sorted(subsets, reverse=True)]


def configurations(subsets) -> list[str]:
    return list(REFERENCES) + trained(subsets)


def parse(name: str) -> tuple[str, int | None]:
    """`full-29` -> ("full", 29); `lora` -> ("lora", None); a variant's `full-29@v` -> ("full", 29)."""
    name = name.split("@", 1)[0]
    if name.startswith("full-"):
        return "full", int(name.split("-", 1)[1])
    return name, None


def label(kind: str, n=None, short: bool = False, size=None) -> str:
    """Table label ('Full finetune (29 examples)') or a figure's short one ('Full 29'); a size's own
    name of its base or skyline where models.<size>.labels sets one."""
    if short:
        return SHORT[kind] + (f" {int(n)}" if kind == "full" and n is not None else "")
    if kind in ("lora", "full") and n is not None and n == n:  # n == n: not NaN
        return f"{LABELS[kind]} ({int(n)} examples)"
    return SIZE_LABELS.get(str(size), {}).get(kind) or LABELS[kind]


# ----------------------------------------------------------------------------- result paths
def data_table(results="results") -> str:
    """The s1K table fetch_data stores (its sha256 and source in data_meta)."""
    return f"{results}/data/s1k.parquet"


def data_meta(results="results") -> str:
    return f"{results}/data/s1k.json"


def data_manifest(results="results") -> str:
    """split_data's manifest: the validation rows and the nested subsets."""
    return f"{results}/data/manifest.json"


def data_lengths(size, results="results") -> str:
    """Token counts per subset under one size's tokenizer (data_lengths)."""
    return f"{results}/data/lengths/{size}.json"


def eval_output(size, config, task, seed, results="results") -> str:
    return f"{results}/eval/{size}/{config}/{task}/seed{seed}.json"


def eval_log(size, config, task, seed, results="results") -> str:
    return f"{results}/logs/eval/{size}/{config}/{task}/seed{seed}.log"


def samples_path(out) -> Path:
    """The per-problem samples beside a cell's result: seed0.json -> seed0.samples.jsonl."""
    out = Path(out)
    return out.with_name(out.stem + ".samples.jsonl")


def train_dir(size, config, results="results") -> str:
    return f"{results}/train/{size}/{config}"


# A training run's folder (train_dir), the one statement of its layout:
#   metrics.jsonl, checkpoints/step-<N>/   the declared outputs (the kept checkpoint alone)
#   data.json                              the length policy's report
#   .done/<key>/                           the finished outputs kept by content (elicit/done_cache.py)
#   work/                                  while training: the same two outputs, before they are
#                                          published, and resume/ (elicit/train/checkpoints.py)
METRICS, CHECKPOINTS, DATA_REPORT, DONE, WORK = "metrics.jsonl", "checkpoints", "data.json", ".done", "work"
RESUME = "resume"  # under work/


def train_outputs(size, config, results="results") -> dict[str, str]:
    """The declared outputs of a training run: its metrics and its kept checkpoint."""
    d = train_dir(size, config, results)
    return {"metrics": f"{d}/{METRICS}", "checkpoints": f"{d}/{CHECKPOINTS}"}


def run_outputs(run) -> dict[str, Path]:
    """The outputs in a run's folder (or its work/ folder) by name: what its done cache keeps."""
    return {METRICS: Path(run) / METRICS, CHECKPOINTS: Path(run) / CHECKPOINTS}


def step_dir(ckpts, step) -> Path:
    """The checkpoint of `step` under a run's checkpoints/ folder."""
    return Path(ckpts) / f"step-{step}"


def step_dirs(ckpts, partial: bool = False) -> list[Path]:
    """The checkpoints under `ckpts`, half-written ones too when `partial` (atomic_dir's .tmp-step-*)."""
    ckpts = Path(ckpts)
    return sorted(p for p in ckpts.glob("*step-*" if partial else "step-*") if p.is_dir()) if ckpts.is_dir() else []


def train_runs(results, size: str = "*", config: str = "*") -> list[Path]:
    """The folders of the training runs under results/train that published metrics (glob patterns)."""
    return [m.parent for m in sorted(Path(results).glob(f"train/{size}/{config}/{METRICS}"))]


def selection(size, config, results="results") -> str:
    return f"{results}/models/{size}/{config}/selection.json"


def model_dir(size, config, results="results") -> str:
    return f"{results}/models/{size}/{config}/model"


def eval_cells(results: Path):
    """(size, config, task, seed, path) of every cell result under `results`."""
    for f in sorted(Path(results).glob("eval/*/*/*/seed*.json")):
        yield f.parents[2].name, f.parents[1].name, f.parent.name, int(f.stem.removeprefix("seed")), f


def fetched_tasks(results: Path) -> list[str]:
    """The tasks results/hub/tasks.json (fetch_tasks) lists; [] when it is missing or unreadable."""
    import json

    try:
        return list(json.loads((Path(results) / "hub" / "tasks.json").read_text()).get("tasks", []))
    except (OSError, ValueError, AttributeError):
        return []
