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

Extra training seeds (train.seeds beyond the first, issue 30) are automatic variants `tseed<k>`
(`full-8@tseed1`): train.seed = k, retraining only the runs train.seed_configs names (default: the
full finetunes of the two smallest subsets) of the sizes train.seed_sizes names (default: every size).
The first seed keeps the default's paths: with train.seeds [0] nothing changes.
"""
from __future__ import annotations

import copy
import re

from elicit import grid, steps

SEP = "@"
SECTIONS = ("train", "lora", "eval")
SEED = "tseed"  # an extra training seed's variant: `tseed1` (train.seeds)
SEED_SETTINGS = ("seeds", "seed_configs", "seed_sizes")  # not a variant's to set


def train_seed(variant: str | None) -> int | None:
    """`tseed1` -> 1 (an extra training seed's variant); None for any other name."""
    m = re.fullmatch(SEED + r"([0-9]+)", variant or "")
    return int(m.group(1)) if m else None


def seed_variants(config: dict) -> list[str]:
    """The variants of the extra training seeds: train.seeds after the first, in the config's order."""
    return [f"{SEED}{k}" for k in (config["train"].get("seeds") or [])[1:]]


def seed_configs(config: dict) -> list[str]:
    """The trained runs the extra training seeds retrain, in the table's order (train.seed_configs; unset:
    the full finetunes of the two smallest subsets, where training variance dominates)."""
    subsets = config["data"]["subsets"]
    wanted = config["train"].get("seed_configs")
    if wanted is None:
        wanted = [f"full-{n}" for n in sorted(subsets)[:2]]
    return [t for t in grid.trained(subsets) if t in wanted]


def names(config: dict) -> list[str]:
    """Every variant of the config: its own (`variants`), then the extra training seeds'."""
    return [*(config.get("variants") or {}), *seed_variants(config)]


def in_size(config: dict, variant: str, size: str) -> bool:
    """Whether the variant has cells in `size` (an extra training seed: the sizes of train.seed_sizes)."""
    sizes = config["train"].get("seed_sizes")
    return train_seed(variant) is None or sizes is None or size in sizes


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
    if train_seed(variant) is not None and variant not in (config.get("variants") or {}):
        out["train"] = {**out["train"], "seed": train_seed(variant)}
        return out
    for section, values in config["variants"][variant].items():
        out[section] = {**out[section], **values}
    return out


def retrained(config: dict, variant: str) -> list[str]:
    """The trained runs (lora, full-N) whose train.py command line the variant changes (an extra
    training seed: train.seed_configs)."""
    if train_seed(variant) is not None and variant not in (config.get("variants") or {}):
        return seed_configs(config)
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


def cells(config: dict, size: str | None = None) -> list[str]:
    """Every variant cell name (`full-8@v`, `full-8@tseed1`, ...) of the config (of one size: the extra
    training seeds' only where train.seed_sizes has it)."""
    return [name(c, v) for v in names(config) if size is None or in_size(config, v, size)
            for c in evaluated(config, v)]


def trained_runs(config: dict, size: str | None = None) -> list[str]:
    return [name(t, v) for v in names(config) if size is None or in_size(config, v, size)
            for t in retrained(config, v)]


def problems(config: dict, validate) -> list[str]:
    """Plan-time checks: each variant's config is valid (`validate(cfg)` -> error strings) and changes
    some job."""
    out = []
    for v, sections in (config.get("variants") or {}).items():
        bad = [s for s in sections if s not in SECTIONS]
        seeds = [f"train.{k}" for k in SEED_SETTINGS if k in (sections.get("train") or {})]
        if train_seed(v) is not None:
            out.append(f"variants.{v}: the name of an extra training seed's cells (train.seeds); choose another")
            continue
        if seeds:
            out.append(f"variants.{v}: {', '.join(seeds)} cannot vary (set train.seeds itself)")
            continue
        if bad:
            out.append(f"variants.{v}: {', '.join(bad)} cannot vary (only {', '.join(SECTIONS)})")
            continue
        errors = validate(apply(config, v))
        out += [f"variants.{v}: {e}" for e in errors]
        if not errors and not evaluated(config, v):
            out.append(f"variants.{v}: changes no job (every setting equals the default's)")
    return out
