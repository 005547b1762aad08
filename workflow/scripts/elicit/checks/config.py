#!/usr/bin/env python
"""Validate a workflow config at plan time: JSON schema first, then cross-field rules; then fill
in the schema's defaults (the one place an optional key's default is written).

Every error names the offending key, e.g. `models.7B.train.gpus: -1 is less than the minimum of 0`.

Usage:
  PYTHONPATH=workflow/scripts python -m elicit.checks.config config/config.yaml
"""
from __future__ import annotations

import sys
from pathlib import Path

import jsonschema
import yaml

from elicit import REPO, backends, grid, variants
from elicit.data.s1k import split_problems
from elicit.eval.stops import max_gen_toks_problem

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _train_seeds(config: dict) -> list[str]:
    """The former train.seed k means train.seeds [k] (the same jobs); both set must agree."""
    t = config.get("train")
    if not isinstance(t, dict) or "seed" not in t:
        return []
    if "seeds" not in t:
        t["seeds"] = [t["seed"]]
    elif isinstance(t["seeds"], list) and t["seeds"][:1] != [t["seed"]]:
        return [f"train.seed ({t['seed']}) and train.seeds ({t['seeds']}): the first training seed differs; "
                "set train.seeds alone (train.seed is its former name)"]
    return []


def seed_problems(config: dict) -> list[str]:
    """train.seed_configs and train.seed_sizes name runs and sizes of the grid."""
    t, out = config["train"], []
    trained = grid.trained(config["data"]["subsets"])
    out += [f"train.seed_configs: {c!r} is not a trained configuration of this grid ({', '.join(trained)})"
            for c in t["seed_configs"] or [] if c not in trained]
    out += [f"train.seed_sizes: {s!r} is not a size under models" for s in t["seed_sizes"] or []
            if s not in config["models"]]  # not `sizes`: --config 'sizes=[7B]' runs one size of the same config
    return out


def check(config: dict) -> dict:
    schema = yaml.safe_load(SCHEMA.read_text())
    seed_errors = _train_seeds(config)
    if seed_errors:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {e}" for e in seed_errors))
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid config:\n" + "\n".join(
            f"  {_key(e.absolute_path)}: {e.message}" for e in errors))
    from snakemake.utils import validate

    validate(config, str(SCHEMA), set_default=True)  # fills every `default:` of the schema, in place
    # a set, stored canonically (largest first, as the paper lists them): reordering reruns nothing
    config["data"]["subsets"] = sorted(config["data"]["subsets"], reverse=True)
    config["eval"]["seeds"] = sorted(config["eval"]["seeds"])  # a set too: reordering reruns nothing
    config["train"]["seed"] = config["train"]["seeds"][0]  # train.py's --seed of the default runs (Table 1)
    problems = []
    for size in config["sizes"]:
        if size not in config["models"]:
            problems.append(f"sizes: {size!r} has no entry under models")
    for size, m in config["models"].items():
        gen = max_gen_toks_problem(config["eval"]["max_gen_toks"], m["context"], f"models.{size}.context")
        if gen and f"eval.max_gen_toks: {gen}" not in problems:  # at least 1: the same line for every size
            problems.append(f"eval.max_gen_toks: {gen}")
        if config["data"]["max_seq_len"] > m["context"]:
            problems.append(f"data.max_seq_len: {config['data']['max_seq_len']} exceeds "
                            f"models.{size}.context={m['context']}")
        margin = config["train"]["stop_margin_min"]
        if margin >= 60 * m["train"]["runtime_h"]:
            problems.append(f"train.stop_margin_min: {margin} min leaves no training time in "
                            f"models.{size}.train.runtime_h={m['train']['runtime_h']}")
        if m.get("chat_template") and not (REPO / m["chat_template"]).is_file():
            problems.append(f"models.{size}.chat_template: no file {m['chat_template']} in the repo")
        world = max(1, m["train"]["gpus"]) * m["train"]["nodes"]
        if config["train"]["global_batch"] % world:
            problems.append(f"models.{size}.train: {world} processes do not divide "
                            f"train.global_batch={config['train']['global_batch']}")
    d = config["data"]  # the split rule of elicit.data.s1k, at plan time on data.expected_rows
    rows = d["expected_rows"]
    problems += [p.replace(f"left by {rows} rows minus", f"left by data.expected_rows={rows} minus")
                 .replace(f"for a {rows}-row table", f"for data.expected_rows={rows}")
                 for p in split_problems(rows, d["n_val"], d["subsets"], d["split_seed"])]
    if rows is None and any("demo" in m for m in config["models"].values()):
        problems.append("data.expected_rows: required with demo models (make_demo.py writes that many rows)")
    t = config["train"]
    if t["warmup_ratio"] and t["warmup_steps"]:
        problems.append(f"train.warmup_ratio ({t['warmup_ratio']}) and train.warmup_steps ({t['warmup_steps']}): "
                        "set one of them")
    for task in (config["eval"]["task_revisions"] or {}):
        if task not in config["eval"]["tasks"]:
            problems.append(f"eval.task_revisions.{task}: not one of eval.tasks")
    for name, tasks in config["benchmarks"].items():
        for t in tasks:
            if t not in config["eval"]["tasks"]:
                problems.append(f"benchmarks.{name}: task {t!r} is not in eval.tasks")
    problems += backend_problems(config) + label_problems(config) + seed_problems(config)
    fixed = {v: lines for v in config["variants"] if (lines := fixed_settings(config, v))}
    problems += [line for lines in fixed.values() for line in lines]
    free = {**config, "variants": {v: s for v, s in config["variants"].items() if v not in fixed}}
    problems += variants.problems(free, lambda cfg: [
        f"{_key(e.absolute_path)}: {e.message}" for e in jsonschema.Draft202012Validator(schema).iter_errors(cfg)]
        or backend_problems(cfg))
    if problems:
        raise ConfigError("invalid config:\n" + "\n".join(f"  {p}" for p in problems))
    return config


# eval settings a variant may not set: which cells exist (a variant's cells are every configuration's at
# the default's tasks and seeds), and those that only schedule the work (elicit/backends.py).
CELL_SETTINGS = ("tasks", "seeds", "include_path")
SCHEDULE_SETTINGS = ("seeds_per_job", "batch_size")


def fixed_settings(config: dict, variant: str) -> list[str]:
    """Why the variant's eval settings cannot vary, one line per setting ([] when they can)."""
    e = (config["variants"][variant] or {}).get("eval") or {}
    out = [f"variants.{variant}: eval.{k} cannot vary: a variant's cells are the default's tasks and seeds under "
           f"other settings (a seed's answers would be the default's); change eval.{k} itself (finished cells "
           "are kept)" for k in CELL_SETTINGS if k in e]
    backend = e.get("backend", config["eval"]["backend"])
    if backend not in backends.REGISTRY:
        return out  # the variant's schema check names it
    sched = [k for k in SCHEDULE_SETTINGS if k in e and k in ("seeds_per_job", *backends.scheduling(backend))]
    out += [f"variants.{variant}: eval.{k} schedules the work and changes no answer (backend {backend}): set it "
            f"under eval, where changing it reruns nothing, not in a variant" for k in sched]
    return out


def label_problems(config: dict) -> list[str]:
    """The tables' names of the configurations (labels, models.<size>.labels): no line break or control
    character (a Markdown row would break), and the four of each size distinct (two rows of one name)."""
    from elicit.grid import KINDS, REFERENCES

    out = [f"labels.{k}: a line break or control character in {v!r} would break the tables' rows"
           for k, v in config["labels"].items() if any(ord(c) < 32 for c in v)]
    for size, m in config["models"].items():
        own = {k: v for k, v in (m.get("labels") or {}).items() if k in REFERENCES and v}
        out += [f"models.{size}.labels.{k}: a line break or control character in {v!r} would break the tables' "
                "rows" for k, v in own.items() if any(ord(c) < 32 for c in v)]
        names = {k: (f"models.{size}.labels.{k}", own[k]) if k in own else (f"labels.{k}", config["labels"][k])
                 for k in KINDS}
        for i, a in enumerate(KINDS):
            for b in KINDS[i + 1:]:
                if names[a][1] == names[b][1]:
                    out.append(f"{names[a][0]} and {names[b][0]}: both {names[a][1]!r}, so two rows of size {size} "
                               "would have one name; give each configuration its own label")
    return list(dict.fromkeys(out))


def backend_problems(config: dict) -> list[str]:
    """What eval.backend cannot honour (elicit/backends.py): a sampling option, a layout set in
    models.<size>.eval.layout. The memory plan's own pick (auto) is checked with the site: layout_problems."""
    e = config["eval"]
    out = backends.sampling_problems(e)
    for size, m in config["models"].items():
        layout = m["eval"].get("layout", "auto")
        if layout != "auto":
            out.append(backends.layout_problem(e["backend"], layout, f"models.{size}.eval.layout"))
    return [p for p in out if p]


def layout_problems(config: dict, gpu_mem_gb: float | None) -> list[str]:
    """The layouts the memory plan picks (models.<size>.eval.layout: auto) for the site's GPUs, of the
    config and of every variant, that the backend cannot run (plan time, once the site is known)."""
    from elicit.plan import memory_plan

    out = []
    for name in [None, *(config.get("variants") or {})]:
        cfg = variants.apply(config, name)
        for size in cfg["sizes"]:
            if cfg["models"][size]["eval"].get("layout", "auto") != "auto":
                continue  # checked by check()
            where = f"{'variants.' + name + ': ' if name else ''}models.{size}.eval.layout (auto)"
            out.append(backends.layout_problem(cfg["eval"]["backend"],
                                               memory_plan.eval_layout(cfg, size, gpu_mem_gb), where))
    return list(dict.fromkeys(p for p in out if p))


SITE_SCHEMA = REPO / "workflow" / "schemas" / "site.schema.yaml"


SITE_FILE_RESOURCE = "site_file"  # profiles/slurm/config.yaml's default-resources name the site file


def profile_site_file(default_resources) -> str | None:
    """The site file a profile names in its default-resources (`site_file='profiles/slurm/site.yaml'`),
    as this process can open it (elicit.repo_path). A command-line --configfile replaces the profile's
    config files, not its default resources, so the site settings survive the README's commands."""
    from elicit import repo_path

    try:
        res = default_resources.get(SITE_FILE_RESOURCE) if default_resources is not None else None
    except AttributeError:
        return None
    raw = getattr(res, "raw", None)
    return repo_path(str(raw).strip("'\"")) if raw else None


def load_site(config: dict) -> dict:
    """The site settings of `config` ({} when there are none), checked against the site schema.

    `site` is a mapping (the profile lists profiles/slurm/site.yaml among its config files, whose
    top-level key is `site:`) or the path of such a file (`--config site=path`). Every size of
    config["sizes"] must map to a partition, or `partitions.default` must exist."""
    site, where = config.get("site"), "config key `site`"
    if "site" not in config:
        return {}
    if site is None:  # `site:` written with nothing under it (a site.yaml emptied by mistake)
        raise ConfigError(f"site settings ({where}): `site:` is empty; it needs at least `partitions:` "
                          "(see profiles/slurm/site.yaml), or leave the key out for a run without SLURM")
    if isinstance(site, str):
        where = site
        try:
            loaded = yaml.safe_load(Path(site).read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"site settings {site}: cannot read ({type(e).__name__}: {e}); it needs a top-level "
                              "key `site:` with at least `partitions:` (copy profiles/slurm/site.yaml of the checkout)")
        if not isinstance(loaded, dict) or "site" not in loaded:
            raise ConfigError(f"site settings {site}: empty or without its top-level key `site:`; it needs `site:` "
                              "with at least `partitions:` (see profiles/slurm/site.yaml of the checkout)")
        site = loaded["site"]
    if not isinstance(site, dict) or not site:
        raise ConfigError(f"site settings ({where}): `site:` is empty; it needs at least `partitions:`")
    schema = yaml.safe_load(SITE_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(site), key=lambda e: list(map(str, e.absolute_path)))
    problems = [f"site.{_key(e.absolute_path)}: {e.message}".replace("site.<top level>", "site") for e in errors]
    parts = site.get("partitions") or {}
    if not errors and site.get("no_account") and site.get("account"):
        problems.append(f"site.no_account: true with site.account {site['account']!r}: set one of them")
    if not errors and "default" not in parts:
        problems += [f"site.partitions.{s}: size {s} has no partition and there is no `default`"
                     for s in config.get("sizes", []) if s not in parts]
    if problems:
        raise ConfigError(f"invalid site settings ({where}):\n" + "\n".join(f"  {p}" for p in problems))
    defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
    return {**defaults, **site}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit(__doc__)
    try:
        check(yaml.safe_load(Path(argv[0]).read_text()))
    except ConfigError as e:
        raise SystemExit(str(e))
    print(f"{argv[0]}: ok")


if __name__ == "__main__":
    main()
