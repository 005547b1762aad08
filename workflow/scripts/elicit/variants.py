"""Named variants of a training or evaluation setting, run as extra cells beside the defaults.

  variants:
    lora-alpha1: {lora: {alpha: 1}}        # retrains the LoRA runs only, evaluates them
    topp-0.95: {eval: {top_p: 0.95}}       # reuses every trained model, re-evaluates every cell

A variant's cell is the configuration's name + "@" + the variant's (`lora@lora-alpha1`): its
training run, selection, model and evaluation live at the same paths as a default's under that
name (elicit.grid). Only the jobs the variant changes run:
  * a trained run (lora, full-N) is retrained when train.py's command line differs under the
    variant (elicit.steps.train_args) for some size; otherwise the default's model is reused;
  * a configuration is evaluated under the variant when its model was retrained or the variant
    changes an evaluation setting (then base and skyline too).
aggregate.py reports a variant's cells as extra rows, its Recovered % computed with the
variant's base and skyline where it re-evaluated them, the defaults' otherwise.
"""
from __future__ import annotations

import copy

from elicit import grid, steps

SEP = "@"
SECTIONS = ("train", "lora", "eval")


def split(name: str) -> tuple[str, str | None]:
    """`lora@lora-alpha1` -> ("lora", "lora-alpha1"); `lora` -> ("lora", None)."""
    base, _, variant = name.partition(SEP)
    return base, variant or None


def name(configuration: str, variant: str | None) -> str:
    return configuration if not variant else f"{configuration}{SEP}{variant}"


def apply(config: dict, variant: str | None) -> dict:
    """The config with the variant's settings on top (a copy; the defaults for None)."""
    if not variant:
        return config
    out = copy.deepcopy(config)
    for section, values in config["variants"][variant].items():
        out[section] = {**out[section], **values}
    return out


def retrained(config: dict, variant: str) -> list[str]:
    """The trained runs (lora, full-N) whose train.py command line the variant changes."""
    v = apply(config, variant)
    return [t for t in grid.trained(config["data"]["subsets"])
            if any(steps.train_args(v, s, t) != steps.train_args(config, s, t) for s in config["sizes"])]


def evaluated(config: dict, variant: str) -> list[str]:
    """The configurations the variant evaluates again (its extra cells), in the table's order."""
    if apply(config, variant)["eval"] != config["eval"]:
        return grid.configurations(config["data"]["subsets"])
    return retrained(config, variant)


def model_run(config: dict, cell: str) -> str:
    """The trained run a (variant) cell evaluates: `lora@v` if v retrained lora, else `lora`."""
    base, variant = split(cell)
    return cell if variant and base in retrained(config, variant) else base


def cells(config: dict) -> list[str]:
    """Every variant cell name (`full-8@v`, ...) of the config."""
    return [name(c, v) for v in config.get("variants") or {} for c in evaluated(config, v)]


def trained_runs(config: dict) -> list[str]:
    return [name(t, v) for v in config.get("variants") or {} for t in retrained(config, v)]


def problems(config: dict, validate) -> list[str]:
    """Plan-time checks: each variant's config is valid (`validate(cfg)` -> error strings) and changes
    some job."""
    out = []
    for v, sections in (config.get("variants") or {}).items():
        bad = [s for s in sections if s not in SECTIONS]
        if bad:
            out.append(f"variants.{v}: {', '.join(bad)} cannot vary (only {', '.join(SECTIONS)})")
            continue
        errors = validate(apply(config, v))
        out += [f"variants.{v}: {e}" for e in errors]
        if not errors and not evaluated(config, v):
            out.append(f"variants.{v}: changes no job (every setting equals the default's)")
    return out
