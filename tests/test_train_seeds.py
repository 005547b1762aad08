"""Training seeds (issue 30): train.seed maps to train.seeds, extra seeds are `tseed<k>` cells of the
chosen runs and sizes, and the hierarchical bootstrap combining training and evaluation noise."""
import copy
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml

from elicit import variants
from elicit.checks.config import ConfigError, check
from elicit.report import bootstrap_ci as bc
from elicit.report import train_seeds as ts
from tests.conftest import ROOT

PAPER = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
BENCH = {"AIME": ["aime"]}


def _paper(**train):
    cfg = copy.deepcopy(PAPER)
    cfg["train"].pop("seeds", None)
    cfg["train"].update(train)
    return cfg


def test_old_train_seed_is_train_seeds_of_one():
    old, new = check(_paper(seed=0)), check(_paper(seeds=[0]))
    assert old == new and old["train"]["seeds"] == [0] and old["train"]["seed"] == 0
    assert variants.cells(old) == [] and variants.trained_runs(old) == []
    with pytest.raises(ConfigError, match=r"train.seed \(1\) and train.seeds \(\[0, 2\]\)"):
        check(_paper(seed=1, seeds=[0, 2]))


def test_extra_seeds_retrain_the_two_smallest_subsets_by_default():
    cfg = check(_paper(seeds=[0, 3, 4]))
    assert cfg["train"]["seed"] == 0  # the first seed: Table 1's runs, their paths unchanged
    assert variants.trained_runs(cfg) == ["full-58@tseed3", "full-29@tseed3", "full-58@tseed4", "full-29@tseed4"]
    assert variants.apply(cfg, "tseed3")["train"]["seed"] == 3
    assert variants.model_run(cfg, "full-29@tseed4") == "full-29@tseed4"
    cfg = check(_paper(seeds=[0, 1], seed_configs=["lora"], seed_sizes=["7B"]))
    assert variants.cells(cfg, "7B") == ["lora@tseed1"] and variants.cells(cfg, "32B") == []


@pytest.mark.parametrize("train,message", [
    ({"seeds": [0, 1], "seed_configs": ["full-30"]}, "train.seed_configs: 'full-30' is not a trained configuration"),
    ({"seeds": [0, 1], "seed_sizes": ["3B"]}, "train.seed_sizes: '3B' is not a size under models"),
])
def test_seed_settings_name_the_grid(train, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check(_paper(**train))


def test_a_variant_cannot_take_a_seed_name_or_set_the_seeds():
    with pytest.raises(ConfigError, match="variants.tseed1: the name of an extra training seed"):
        check({**_paper(seeds=[0]), "variants": {"tseed1": {"lora": {"alpha": 1}}}})
    with pytest.raises(ConfigError, match=r"variants.s: train.seeds cannot vary"):
        check({**_paper(seeds=[0]), "variants": {"s": {"train": {"seeds": [0, 1]}}}})


def _jobs(tmp_path, name, train_lines):
    """The dry-run's jobs (rule, wildcards, command) of the paper grid with these train.seed* lines."""
    text = (ROOT / "config" / "config.yaml").read_text()
    text = re.sub(r"^  seeds: \[0\].*$", train_lines, text, count=1, flags=re.M)
    (tmp_path / f"{name}.yaml").write_text(text)
    out = subprocess.run(["snakemake", "-n", "-p", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / name),
                          "--configfile", str(tmp_path / f"{name}.yaml")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    jobs = re.split(r"\n\[\w{3} \w{3} [^\]]+\]\n", out.stdout)[1:]  # a job's block follows its time stamp
    return sorted(re.sub(r"\n\s*(?:jobid|reason): [^\n]*", "", j.split("\nJob stats:")[0]).strip() for j in jobs)


@pytest.mark.slow
def test_old_config_plans_the_same_jobs(tmp_path):
    old = _jobs(tmp_path, "old", "  seed: 0")
    assert len(old) > 100 and old == _jobs(tmp_path, "new", "  seeds: [0]")


# ---------------------------------------------------------------- the combined bootstrap
def _samples(spread: float, runs=("", "tseed1"), P=40, seed=0):
    """base, skyline and full-8 on one task of P problems, 2 eval seeds; full-8 has one run per training
    seed, its success rate shifted by `spread` between runs (0: the later runs answer as the first)."""
    rng = np.random.default_rng(seed)
    rows = []
    for cfg, n, p, run_list in (("base", None, 0.2, [""]), ("skyline", None, 0.8, [""]),
                                ("full", 8, 0.5, list(runs))):
        for s in (0, 1):
            first = None
            for i, run in enumerate(run_list):
                shift = spread * (i - (len(run_list) - 1) / 2)
                x = first if first is not None and not spread else (rng.random(P) < p + shift).astype(float)
                first = x if first is None else first
                rows.append(pd.DataFrame({"size": "7B", "configuration": cfg, "train_examples": n, "task": "aime",
                                          "seed": s, "doc_id": range(P), "score": x, "train_run": run}))
    df = pd.concat(rows, ignore_index=True)
    df["train_examples"] = df["train_examples"].astype("Int64")
    return df


def _full(reps):
    rep = reps[("7B", "AIME")]
    i = rep.configs.index(("full", 8))
    return rep.point[i], bc._interval(rep.reps[:, [i]], 0.95)


def test_one_training_seed_is_table_1b():
    df = _samples(0.0, runs=("",))
    eval_only = bc.replicates(df.drop(columns="train_run"), BENCH, 500, 3, resample_seeds=False)[("7B", "AIME")]
    combined = ts.replicates(df, BENCH, 500, 3)[("7B", "AIME")]
    assert combined.configs == eval_only.configs
    assert np.array_equal(combined.reps, eval_only.reps) and np.array_equal(combined.point, eval_only.point)


def test_runs_that_agree_give_the_eval_only_interval():
    """Zero training-seed spread (the second run's answers equal the first's): the interval is the
    first run's alone."""
    df = _samples(0.0)
    assert (df[df.train_run == "tseed1"]["score"].to_numpy() == df[(df.train_run == "")
            & (df.configuration == "full")]["score"].to_numpy()).all()
    first = ts.replicates(df[df.train_run == ""], BENCH, 1000, 1)
    (p1, (lo1, hi1)), (p2, (lo2, hi2)) = _full(first), _full(ts.replicates(df, BENCH, 1000, 1))
    assert p1 == pytest.approx(p2) and lo1 == pytest.approx(lo2) and hi1 == pytest.approx(hi2)


def test_training_spread_widens_the_interval():
    """Two runs 40 points apart: the combined interval covers both and is far wider than either run's."""
    df = _samples(0.4)
    point, (lo, hi) = _full(ts.replicates(df, BENCH, 2000, 0))
    alone = _full(ts.replicates(df[df.train_run == ""], BENCH, 2000, 0))[1]
    run_means = df[df.configuration == "full"].groupby("train_run")["score"].mean() * 100
    assert point == pytest.approx(run_means.mean())
    assert lo <= run_means.min() and hi >= run_means.max()
    assert (hi - lo) > 2.5 * (alone[1] - alone[0])


def test_table_1d_stands_beside_table_1b():
    df = _samples(0.4)
    first = bc.bootstrap(df[df.train_run == ""].drop(columns="train_run"), BENCH, 500, 0,
                         resample_seeds=False)["scores"]
    t, _ = ts.table(df, BENCH, first, n_boot=500)
    full = t[t.configuration == "full"].iloc[0]
    assert full["train_seeds"] == 2 and full["widening"] > 1.5
    assert full["first_mean"] == pytest.approx(df[(df.configuration == "full") & (df.train_run == "")].score.mean() * 100)
    base = t[t.configuration == "base"].iloc[0]
    assert base["train_seeds"] == 1 and base["widening"] == pytest.approx(1.0)


def test_aggregate_writes_table_1d_and_keeps_table_1(tmp_path):
    """A second training seed of full-4 (5 -> 15 of 20 right): Table 1 and the claim stay the first seed's,
    Table 1d and claim_train_seeds.csv take the mean of both runs with a wider interval."""
    import aggregate
    from tests.helpers import HIDDEN_BENCH as BENCH2
    from tests.helpers import HIDDEN_CORRECT as CORRECT
    from tests.helpers import put_hidden as put

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text('{"n_rows": 100}')
    for config, k in {**CORRECT, "full-4@tseed1": 15}.items():
        for task in ("aime", "gpqa"):
            for seed in (0, 1):
                put(tmp_path, "7B", config, task, seed, k)
    aggregate.run(tmp_path, ["7B"], BENCH2, paper=None, n_boot=300, figures=False, params={"7B": 7e9},
                  variants={"tseed1": ["full-4"]})
    t1 = pd.read_csv(tmp_path / "table1.csv").set_index(["configuration", "train_examples"])
    assert t1.loc[("full", 4), "AIME"].startswith("25.00")  # 5 of 20: the first seed's alone
    d = pd.read_csv(tmp_path / "table1_train_seeds.csv").set_index(["configuration", "train_examples", "benchmark"])
    row = d.loc[("full", 4, "AIME")]
    assert row["train_seeds"] == 2 and row["mean"] == pytest.approx(50.0) and row["first_mean"] == pytest.approx(25.0)
    assert row["ci_lo"] <= 25 and row["ci_hi"] >= 75 and row["widening"] > 1.5
    assert d.loc[("full", 8, "AIME"), "train_seeds"] == 1 and d.loc[("full", 8, "AIME"), "widening"] == pytest.approx(1)
    assert "Table 1d. Training and evaluation noise combined" in (tmp_path / "table1_train_seeds.md").read_text()
    claim, both = (pd.read_csv(tmp_path / f, dtype=str) for f in ("claim.csv", "claim_train_seeds.csv"))
    aime = [c[(c.benchmark == "AIME") & (c.row == "size")].iloc[0] for c in (claim, both)]
    assert float(aime[0]["recovered_at_min"]) == pytest.approx(25.0)
    assert float(aime[1]["recovered_at_min"]) == pytest.approx(50.0)
    assert (tmp_path / "scaling_fit_train_seeds.csv").stat().st_size > 0
