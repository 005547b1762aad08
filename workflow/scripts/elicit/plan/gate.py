"""The fail-fast gate (issue 31): which pilot the larger sizes' GPU jobs wait for.

With `jobs: 200` every ready job is submitted at once, so a broken recipe would run on every size
before anything of it could be looked at. With `gate: wait` (the default) the train and
evaluation jobs of every size after the first of `sizes` wait for results/gate/<first size>.json,
written by workflow/scripts/gate.py once the first size's pilot finished and is sane: its
smallest full finetune (the cheapest run of the paper's recipe) with finite losses, that run's
selection, and one evaluation cell (the first task, the first seed) whose answers parse.
`gate: open` (a user who ran the pilot already, e.g. config/pilot.yaml) starts them at once;
a grid of one size has no gate.
"""
from __future__ import annotations

import os

from elicit import grid

DIR = "results/gate/"


def path(size: str) -> str:
    return f"{DIR}{size}.json"


def pilot(config: dict) -> dict | None:
    """The gate of this config: the pilot's size, run and files, the sizes that wait for it; None
    without a gate (gate: open, or a single size)."""
    sizes = list(config["sizes"])
    if config.get("gate", "wait") == "open" or len(sizes) < 2:
        return None
    size, run = sizes[0], grid.trained(config["data"]["subsets"])[-1]  # the smallest subset's full finetune
    task, seed = config["eval"]["tasks"][0], config["eval"]["seeds"][0]
    return {
        "size": size,
        "run": run,
        "gated": sizes[1:],
        "metrics": grid.train_outputs(size, run)["metrics"],
        "selection": grid.selection(size, run),
        "cell": grid.eval_output(size, run, task, seed),
        "out": path(size),
    }


def summary(p: dict) -> str:
    """The plan-time line of a gate not passed yet."""
    return (
        f"fail-fast gate: the GPU jobs of {', '.join(p['gated'])} wait for {p['out']} (rule gate: {p['size']}'s "
        f"{p['run']} finetune, its selection and the cell {p['cell']} finished and sane); "
        "`--config gate=open` starts them at once (for a pilot already run)"
    )


def pending(out: str) -> str:
    """Beside the gate file: written when the check starts, removed once it passed (a failed or
    killed check leaves it; Snakemake deletes a failed job's declared output, not this)."""
    return out.removesuffix(".json") + ".pending.json"


def waits(pilot: dict | None, size: str, outputs: list[str], exists=os.path.exists) -> bool:
    """Whether a GPU job of `size` with these outputs waits for the gate file (an order-only input):
    a gated size's job, while the gate has not passed (no gate file), whose outputs are missing or
    after a failed or killed check (its pending file exists). A passed gate stays open for the
    results directory: a job that has the gate as input while it reruns would have its own rerun
    reasons (a changed setting) hidden by Snakemake, which does not look at the jobs after a rerun
    job and skips those whose only link to it is an ancient input (dag.update_needrun). A job of a
    grid finished before the gate existed (or with its gate files deleted) does not wait: no gate
    job is planned for finished work. After a failed check the jobs given the gate wait and, once a
    check passes, rerun (a finished one restores its result from its .done cache): better than
    running the larger sizes on a recipe known to be broken."""
    if not pilot or size not in pilot["gated"] or exists(pilot["out"]):
        return False
    return exists(pending(pilot["out"])) or not all(exists(o) for o in outputs)


def rule_outputs(rule, wildcards) -> list[str]:
    """A Snakemake rule's output paths for one job's wildcards."""
    from snakemake.io import apply_wildcards

    return [apply_wildcards(str(o), wildcards) for o in rule.output]


def leave_out_of_recorded_inputs(prefix: str) -> None:
    """Snakemake's `input` rerun trigger compares the input files it recorded for a job with the
    job's current ones (PersistenceBase._input, both sides): leave the gate files out of both, so
    a job that gains or loses the gate (added, opened, its file deleted) keeps its inputs."""
    import snakemake.persistence as persistence

    recorded = persistence.PersistenceBase._input
    if getattr(recorded, "leaves_out", None) == prefix:
        return

    def without_gate(self, job):
        return [f for f in recorded(self, job) if not str(f).startswith(prefix)]

    without_gate.leaves_out = prefix
    persistence.PersistenceBase._input = without_gate
