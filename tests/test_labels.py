"""Configuration labels (config `labels`, models.<size>.labels) in every table (issue 29, item 9): before,
a label with braces stopped the plan with a WildcardError in rule aggregate naming no setting, a `|` added
a column to table1.md, and two configurations with one name gave two rows of one name."""
import copy
import subprocess

import pandas as pd
import pytest
import yaml

from elicit.checks.config import ConfigError, check
from tests.conftest import ROOT

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def test_a_label_with_braces_plans(tmp_path):
    (tmp_path / "x.yaml").write_text(yaml.safe_dump({"labels": {"lora": "LoRA {rank}"}}))
    out = subprocess.run(["snakemake", "-n", "-p", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "--configfile",
                          str(ROOT / "config" / "demo.yaml"), str(tmp_path / "x.yaml"), "--", "results/table1.md"],
                         capture_output=True, text=True)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "LoRA {rank}" in out.stdout  # passed to aggregate as it is


@pytest.mark.parametrize("labels,models,needle", [
    ({"lora": "Full finetune (demo)"}, {}, "labels.lora and labels.full: both"),
    ({}, {"tiny-a": {"base": "Tiny oracle skyline (demo)"}}, "models.tiny-a.labels.base and labels.skyline: both"),
    ({"full": "Full\nfinetune"}, {}, "labels.full: a line break"),
])
def test_labels_are_validated_at_plan_time(labels, models, needle):
    cfg = copy.deepcopy(DEMO)
    cfg["labels"].update(labels)
    for size, own in models.items():
        cfg["models"][size]["labels"] = own
    with pytest.raises(ConfigError) as e:
        check(cfg)
    assert needle in str(e.value), str(e.value)


def test_every_table_format_escapes_a_label():
    from elicit import grid
    from elicit.report import tables

    grid.set_labels({"lora": "LoRA | {rank} & 50% $x$ ~^_#", "full": "Full"})
    try:
        t1 = pd.DataFrame([{"size": "1.5B", "configuration": "lora", "train_examples": 1000, "AIME": "1.00 ± 0.10"},
                           {"size": "1.5B", "configuration": "full", "train_examples": 29, "AIME": "2.00 ± 0.20"}])
        rec = pd.DataFrame(columns=["size", "configuration", "benchmark", "undefined"])
        md = tables.markdown(t1, rec).splitlines()
        header = md[0].replace("\\|", "").count("|")
        assert all(row.replace("\\|", "").count("|") == header for row in md[2:4]), md[:4]
        tex = tables.latex(t1, rec)
        row = next(line for line in tex.splitlines() if "LoRA" in line)
        assert r"LoRA | \{rank\} \& 50\% \$x\$ \textasciitilde{}\textasciicircum{}\_\#" in row
    finally:
        grid.set_labels({})
