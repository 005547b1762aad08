"""Every config is validated at plan time; errors name the offending key."""
import copy
import subprocess

import pytest
import yaml

from config_check import ConfigError, check
from tests.conftest import ROOT

PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def test_shipped_configs_are_valid():
    check(copy.deepcopy(PAPER))
    check(copy.deepcopy(DEMO))


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
