"""The evaluation backends (eval.backend) and what each can honour: the one registry that the evaluation
(elicit/eval/cell.py: which model class to build, which model args to pass; eval_cell.py's --backend), the
memory plan and the cost estimate (elicit/plan/: how a backend holds its sequences, whose throughput it has)
and the plan-time checks (elicit/checks/config.py: an option a backend cannot honour is refused before any
job starts) read. It sits in the core, below every stage, so that each of them can.

A new backend: its class registered with lm-eval (`register_model`) in its module, an entry here and
its name in the schema's eval.backend enum (tests/test_backend_limits.py checks they agree); eval_cell.py's
--backend takes its choices and help from here.

Fields:
  lm_eval     lm-eval's registry name of the model class
  register    the module that registers it (None: lm-eval's own): `load()` imports it; the finished-cell
              cache key covers its code (elicit/eval/cell.py's EVAL_CODE)
  resumable   our ResumableMixin: gets the sidecar path, the seed, the model fingerprint and the layout
  sampling    the sampling options (eval.*) it honours at a value other than their off value (OFF)
  layouts     the GPU layouts of a job it runs (models.<size>.eval.layout, or the memory plan's pick)
  pooled      the cells of one job share one generation run (eval_pool.py: `generate_pool`, `use_cell`)
  batch_defines_answers
              whether eval.batch_size changes the answers (hf-resumable: fixed batches seeded per batch;
              hf: lm-eval's batches draw from one torch stream). False: it only schedules the work (how
              many sequences are in flight), no rerun trigger, not in the finished-cell cache key.
  why         what it cannot do, in the refusal's words
  own_tp      under layout tp it shards the weights itself (hf-slots), so lm-eval gets no tp_plan
  what        what it is, in eval_cell.py's --help
  memory      how a job holds its sequences, the memory plan's model of it (elicit/plan/memory_plan.py):
              "paged" (a paged KV cache of what the weights leave, a replica per GPU), "slots" (S slots of
              the whole length allocated up front), "batches" (eval.batch_size sequences at a time)
  rates_as    the backend whose throughput (resources/throughput.yaml) it has, where it has none of its own
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

# The off value of each sampling option (what every backend honours).
OFF = {"top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
ALL_LAYOUTS = ("single", "dp", "tp", "split")


@dataclass(frozen=True)
class Backend:
    name: str
    lm_eval: str
    register: str | None
    resumable: bool
    sampling: frozenset
    layouts: tuple
    pooled: bool
    batch_defines_answers: bool
    why: str = ""
    own_tp: bool = False  # shards the weights itself under tp (no transformers tp_plan)
    what: str = ""
    memory: str = "batches"
    rates_as: str | None = None

    def load(self) -> None:
        """Imports the module that registers the backend with lm-eval (none: lm-eval's own)."""
        if self.register:
            importlib.import_module(self.register)


REGISTRY = {b.name: b for b in (
    Backend("hf-cb", lm_eval="hf-cb", register="elicit.eval.lm_backend_cb", resumable=True, sampling=frozenset({"top_p", "top_k", "min_p"}),
            layouts=("single", "dp", "split"), pooled=True, batch_defines_answers=False,
            why="continuous batching passes no token history to logits processors (no repetition_penalty) and "
                "runs a replica per GPU (no tp)", what="transformers continuous batching, resumable", memory="paged"),
    Backend("hf-slots", lm_eval="hf-slots", register="elicit.eval.lm_backend_slots", resumable=True,
            sampling=frozenset({"top_p", "top_k", "min_p"}), layouts=("single", "dp", "tp"), pooled=True,
            batch_defines_answers=False,
            why="the captured step samples without the token history (no repetition_penalty); its own tensor "
                "parallel, no layer split", own_tp=True, what="static slots, a captured decode step, resumable",
            memory="slots"),
    Backend("hf-resumable", lm_eval="hf-resumable", register="elicit.eval.lm_backend", resumable=True, sampling=frozenset(OFF),
            layouts=ALL_LAYOUTS, pooled=False, batch_defines_answers=True,
            what="HF generate, resumable, prompt-length check"),
    Backend("hf", lm_eval="hf", register=None, resumable=False, sampling=frozenset(OFF), layouts=("single", "split"),
            pooled=False, batch_defines_answers=True, why="plain lm-eval runs one process (no dp/tp under torchrun)",
            what="plain lm-eval", rates_as="hf-resumable"),
)}
NAMES = tuple(REGISTRY)


# eval_cell.py's flags that only schedule the work, for every backend: never a rerun trigger (the eval rules'
# params) nor in the finished-cell cache key (elicit/eval/cell.py cache_key); the result records them
# (tests/test_eval_settings.py lists every setting and its side).
SCHEDULING = ("layout", "device", "allow_hub")
# The flags naming a job's cells (--task, --seed, and --task-revision, one per --task): the result
# paths say which cells; the rules' params hold the config's task revisions as one value instead.
CELLS = ("task", "seed", "task_revision")


def scheduling(backend: str) -> tuple:
    """The flags that schedule the work of `backend`: SCHEDULING, and batch_size where it does not
    change the answers."""
    return SCHEDULING + (() if REGISTRY[backend].batch_defines_answers else ("batch_size",))


def summary() -> str:
    """Every backend in a line: `name (what it is)`, the registry's order."""
    return ", ".join(f"{b.name} ({b.what})" for b in REGISTRY.values())


def get(name: str) -> Backend:
    return REGISTRY[name]


def memory(config: dict) -> str:
    """The memory model of the config's eval.backend ("batches" where none is set)."""
    b = REGISTRY.get(config["eval"].get("backend"))
    return b.memory if b else "batches"


def able(option: str | None = None, layout: str | None = None) -> list[str]:
    """The backends that honour a sampling option / run a layout."""
    return [b.name for b in REGISTRY.values()
            if (option is None or option in b.sampling) and (layout is None or layout in b.layouts)]


def sampling_problems(e: dict, where: str = "eval") -> list[str]:
    """One line per sampling option of the eval settings `e` that its backend cannot honour."""
    b = REGISTRY[e["backend"]]
    return [f"{where}.{k}: {e[k]} is not supported by {where}.backend {b.name} ({b.why}); "
            f"set {where}.{k}: {off} or a backend that can: {', '.join(able(option=k))}"
            for k, off in OFF.items() if e.get(k, off) != off and k not in b.sampling]


def layout_problem(backend: str, layout: str, where: str) -> str:
    """'' when `backend` runs `layout`; else the refusal, naming the backends that can."""
    b = REGISTRY[backend]
    if layout in b.layouts:
        return ""
    return (f"{where}: layout {layout} is not run by eval.backend {b.name} ({b.why}); set eval.backend to "
            f"one that can ({', '.join(able(layout=layout))}) or the layout to one of {', '.join(b.layouts)}")
