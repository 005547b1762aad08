"""Every config is validated at plan time; errors name the offending key."""
import copy
import subprocess

import pytest
import yaml

from elicit.checks.config import ConfigError, check
from tests.conftest import ROOT

PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def test_shipped_configs_are_valid():
    check(copy.deepcopy(PAPER))
    check(copy.deepcopy(DEMO))
    check(yaml.safe_load((ROOT / "config" / "qwen3.yaml").read_text()))


def mutate(path, value):
    cfg = copy.deepcopy(PAPER)
    *parents, last = path
    node = cfg
    for p in parents:
        node = node[p]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return cfg


@pytest.mark.parametrize("path,value,needle", [
    (["models", "7B", "train", "gpus"], -1, "models.7B.train.gpus"),
    (["train", "lr"], "fast", "train.lr"),
    (["data", "format"], "chatml", "data.format"),
    (["eval", "seeds"], [0, 0], "eval.seeds"),
    (["eval", "max_gen_toks"], 40000, "eval.max_gen_toks"),
    (["eval", "max_gen_toks"], 0, "eval.max_gen_toks: 0 new tokens: at least 1"),
    (["train", "global_batch"], 12, "models.32B.train"),
    (["sizes"], ["1.5B", "3B"], "sizes: '3B'"),
    (["benchmarks", "AIME"], ["aime2024"], "benchmarks.AIME"),
    (["train", "lr_typo"], 1, "'lr_typo' was unexpected"),
    (["lora", "rank"], KeyError, "lora: 'rank' is a required property"),
    (["train", "stop_margin_min"], 360, "models.1.5B.train.runtime_h=6"),
    (["models", "14B", "train", "deepspeed"], "zero4", "models.14B.train.deepspeed"),
    (["models", "14B", "eval", "layout"], "pipeline", "models.14B.eval.layout"),
    (["models", "14B", "train", "layout"], "tp", "'layout' was unexpected"),  # an eval-only key
    (["train", "loss_chunk"], 0, "train.loss_chunk"),
    (["cost", "max_prompt_tokens"], {"aime24": 0}, "cost.max_prompt_tokens.aime24"),
])
def test_error_names_the_key(path, value, needle):
    with pytest.raises(ConfigError) as e:
        check(mutate(path, value))
    assert needle in str(e.value)


def test_snakemake_refuses_bad_config_at_plan_time(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate(["models", "7B", "eval", "runtime_h"], 0)))
    out = subprocess.run(["snakemake", "-n", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path),
                          "--configfile", str(bad)], capture_output=True, text=True)
    assert out.returncode != 0
    assert "models.7B.eval.runtime_h" in out.stdout + out.stderr


# ------------------------------------------------------------------ defaults, stated once
def _optional_without_default(schema, path=""):
    """Keys of the schema's objects that are neither required nor given a `default:`."""
    out = []
    for key, sub in (schema.get("properties") or {}).items():
        if key not in schema.get("required", []) and "default" not in sub:
            out.append(f"{path}{key}")  # an optional section as a whole: its keys are its own business
            continue
        out += _optional_without_default(sub, f"{path}{key}.")
    if isinstance(schema.get("additionalProperties"), dict):
        out += _optional_without_default(schema["additionalProperties"], f"{path}*.")
    for name, sub in (schema.get("$defs") or {}).items():
        out += _optional_without_default(sub, f"$defs.{name}.")
    return out


def test_every_optional_setting_has_its_default_in_the_schema():
    from elicit.checks.config import SCHEMA

    schema = yaml.safe_load(SCHEMA.read_text())
    # sections that are optional as a whole (no value to default to); a model's arch, labels and
    # chat_template override what its hub id implies (its config.json, the top-level labels, its
    # tokenizer's own template), as `arch` does: unset, the paper's commands stay byte-identical;
    # train.seed is the former name of train.seeds[0] (elicit.checks.config fills it from there)
    assert sorted(_optional_without_default(schema)) == ["cost", "models.*.arch", "models.*.chat_template",
                                                         "models.*.demo", "models.*.labels", "site", "train.seed"]


def test_check_fills_the_defaults_the_rules_read():
    cfg = copy.deepcopy(PAPER)
    for key in ("adam_beta1", "adam_beta2", "warmup_steps", "max_grad_norm", "loss_chunk", "stop_margin_min"):
        cfg["train"].pop(key, None)
    for key in ("top_p", "top_k", "min_p", "repetition_penalty", "batch_size", "backend", "limit"):
        cfg["eval"].pop(key, None)
    for m in cfg["models"].values():
        for job in (m["train"], m["eval"]):
            job.pop("nodes", None)
            job.pop("cpus", None)
    check(cfg)
    assert (cfg["train"]["adam_beta2"], cfg["train"]["warmup_ratio"], cfg["train"]["loss_chunk"]) == (0.95, 0, 512)
    assert (cfg["eval"]["top_p"], cfg["eval"]["top_k"], cfg["eval"]["backend"], cfg["eval"]["limit"]) == \
        (1.0, 0, "hf-cb", None)
    assert (cfg["eval"]["batch_size"], cfg["eval"]["seeds_per_job"]) == ("auto", "auto")
    assert all(m["train"]["nodes"] == 1 and m["eval"]["layout"] == "auto" and m["base_revision"] is None
               for m in cfg["models"].values())


def test_programs_have_no_default_for_a_config_value():
    """train.py: every setting the rule passes is a required flag; eval_cell.py likewise for the
    generation settings (its top_p once defaulted to 0.95 against the config's 1.0)."""
    import dataclasses

    import eval_cell
    import train
    from elicit import steps

    cfg = check(copy.deepcopy(DEMO))
    fields = {f.name: f for f in dataclasses.fields(train.TrainConfig)}
    for trained in ("full-16", "lora"):
        for key in steps.train_args(cfg, cfg["sizes"][0], trained):
            assert fields[key].default is dataclasses.MISSING or key.startswith("lora_"), key
    required = {a.dest for a in eval_cell.build_parser()._actions if a.required}
    assert {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "batch_size", "backend",
            "max_length", "layout", "max_gen_toks", "seed"} <= required


@pytest.mark.parametrize("variants,message", [
    ({"a": {"lora": {"alfa": 1}}}, "variants.a: lora: Additional properties are not allowed ('alfa' was unexpected)"),
    ({"a": {"eval": {"top_p": 2}}}, "variants.a: eval.top_p: 2 is greater than the maximum of 1"),
    ({"a": {"data": {"n_val": 3}}}, "variants.a: data cannot vary (only train, lora, eval)"),
    ({"a": {"lora": {"alpha": 16}}}, "variants.a: changes no job (every setting equals the default's)"),
    ({"A b": {"lora": {"alpha": 1}}}, "variants: 'A b' does not match"),
])
def test_variants_are_checked_like_the_config(variants, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        check({**copy.deepcopy(PAPER), "variants": variants})


def test_labels_default_to_the_papers():
    assert check(copy.deepcopy(PAPER))["labels"]["base"] == "Qwen2.5-Instruct (base)"
    assert check(copy.deepcopy(DEMO))["labels"]["base"] == "Tiny random base (demo)"


def test_a_models_labels_and_chat_template_come_from_its_entry():
    """models.<size>.labels name that size's base and skyline in the tables; models.<size>.chat_template
    reaches train.py only when set (the paper's commands unchanged) and must exist."""
    from elicit import grid, steps
    from elicit.report import tables

    qwen3 = check(yaml.safe_load((ROOT / "config" / "qwen3.yaml").read_text()))
    paper = check(copy.deepcopy(PAPER))
    assert grid.size_labels(paper) == paper["labels"]  # no `sizes`: the aggregate command is the paper's
    mixed = copy.deepcopy(paper)
    mixed["models"]["7B"] = {**qwen3["models"]["8B"], "labels": {"base": "Qwen3-Base"}}
    try:
        grid.set_labels(grid.size_labels(mixed))
        row = {"configuration": "base", "train_examples": float("nan")}
        assert tables.row_label({**row, "size": "7B"}) == "Qwen3-Base"
        assert tables.row_label({**row, "size": "14B"}) == "Qwen2.5-Instruct (base)"
        assert tables.row_label({**row, "size": "7B", "configuration": "skyline"}) == "DeepSeek-R1-Distill"
    finally:
        grid.set_labels({})
    assert "chat_template" not in steps.train_args(paper, "7B", "full-29")
    mixed["models"]["7B"]["chat_template"] = "resources/qwen2_5_chat_template.jinja"
    assert steps.train_args(check(mixed), "7B", "lora")["chat_template"] == "resources/qwen2_5_chat_template.jinja"
    mixed["models"]["7B"]["chat_template"] = "resources/missing.jinja"
    with pytest.raises(ConfigError, match="models.7B.chat_template: no file resources/missing.jinja"):
        check(mixed)
