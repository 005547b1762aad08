"""What a score hides, aggregated from saved answers: stop reasons, the second scorer, the scaling fit,
variants as extra rows, labels from config, and Figure 1 keeping an uncertain denominator."""
import json

import pandas as pd
import pytest

import aggregate
from elicit.report import figures, scaling
from tests.helpers import HIDDEN_BENCH as BENCH
from tests.helpers import HIDDEN_CORRECT as CORRECT
from tests.helpers import HIDDEN_N as N
from tests.helpers import put_hidden as put


@pytest.fixture
def results(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"n_rows": 100}))
    for config, k in CORRECT.items():
        for task in ("aime", "gpqa"):
            for seed in (0, 1):
                put(tmp_path, "7B", config, task, seed, k)
    return tmp_path


def test_hidden_outputs(results):
    aggregate.run(results, ["7B"], BENCH, paper=None, n_boot=200, labels={"base": "Tiny base (demo)"},
                  params={"7B": 7e9}, variants={"a1": ["lora"]})
    stops = pd.read_csv(results / "stop_reasons.csv").set_index(["configuration", "train_examples", "benchmark"])
    row = stops.loc[("full", 8, "AIME")]  # 20 problems x 2 seeds
    assert (row["answers"], row["eos"], row["stop"], row["truncated"]) == (40, 36, 2, 2)  # truncated: at max_gen_toks
    assert "max_gen_toks" not in stops.columns  # the column says what it counts, not the setting
    assert row["truncated_pct"] == pytest.approx(5.0) and row["stop_strings"] == "Question:"
    assert row["mean_new_tokens"] == pytest.approx((100 + 19 * 10) / 20)
    assert "| 7B | Full finetune (8 examples) | AIME | 40 | 36 | 2 | 2 | 5.0 | 14 | Question: | 0 |" in \
        (results / "stop_reasons.md").read_text()
    agree = pd.read_csv(results / "scorer_agreement.csv").set_index(["configuration", "train_examples", "task"])
    assert agree.loc[("full", 8, "gpqa"), ["only_robust", "only_upstream", "answers"]].tolist() == [2, 0, 40]
    assert agree.loc[("full", 8, "aime"), "disagree"] == 0
    # Table 1 stays upstream's; the robust table counts the boxed letter: GPQA full-8 10/20 -> 11/20
    t1 = pd.read_csv(results / "table1.csv").set_index(["configuration", "train_examples"])
    rb = pd.read_csv(results / "table1_robust.csv").set_index(["configuration", "train_examples"])
    assert t1.loc[("full", 8), "GPQA"].startswith("50.00") and rb.loc[("full", 8), "GPQA"].startswith("55.00")
    assert "disagree: 12 of 480 answers" in (results / "table1_robust.md").read_text()  # 6 GPQA cells x 2 seeds
    assert "second scorer `C` (1)" in (results / "table1_robust.md").read_text()
    # scaling: AIME Recovered % 25, 50, 75 at 4, 8, 16 examples: 25 points per doubling, 50 % at 8
    fit = pd.read_csv(results / "scaling_fit.csv").set_index("benchmark")
    assert fit.loc["AIME", "slope"] == pytest.approx(25.0)
    assert fit.loc["AIME", "slope_lo"] <= 25.0 <= fit.loc["AIME", "slope_hi"]
    assert fit.loc["AIME", "examples_50"] == pytest.approx(8.0) and fit.loc["AIME", "params"] == 7e9
    assert (results / "figures" / "scaling_fit.png").stat().st_size > 10_000
    # the claim: AIME gains 25/50/75 points at 4/8/16 examples, all positive -> smallest subset 4
    claim = pd.read_csv(results / "claim.csv", dtype={"smallest_positive": str, "n50": str})
    row = claim[(claim["benchmark"] == "AIME") & (claim["row"] == "size")].iloc[0]
    assert (row["size"], row["smallest_positive"], row["n_min"]) == ("7B", "4", 4)
    assert row["recovered_at_min"] == pytest.approx(25.0) and row["rec_lo"] < 25 < row["rec_hi"]
    assert row["n50"] == "8" and row["positive_subsets"] == "4 8 16"
    verdict = claim[(claim["benchmark"] == "AIME") & (claim["row"] == "verdict")].iloc[0]
    assert verdict["verdict"] == "needs >= 2 sizes"
    assert (results / "figures" / "claim.png").stat().st_size > 10_000
    # the variant: its LoRA cell beside the default's, Recovered % included
    var = pd.read_csv(results / "variants.csv").set_index(["variant", "configuration", "benchmark"])
    assert var.loc[("a1", "lora", "AIME"), "mean"] == pytest.approx(10.0)
    assert var.loc[("a1", "lora", "AIME"), "default_mean"] == pytest.approx(40.0)
    assert var.loc[("a1", "lora", "AIME"), "recovered_pct"] == pytest.approx(10.0)
    md = (results / "table1.md").read_text()
    assert "Table 1c. Variants" in md and "| a1 | 7B |" in md
    assert "| 7B | Tiny base (demo) |" in md  # labels from config
    # the variant's cells never enter the default grid
    assert pd.read_parquet(results / "samples.parquet")["configuration"].value_counts()["lora"] == 2 * 2 * N


def test_not_reached_within_the_data(results):
    for seed in (0, 1):  # full finetunes recover 5, 10, 15 % only: the line reaches 50 % far beyond 16
        for config, k in (("full-4", 1), ("full-8", 2), ("full-16", 3)):
            put(results, "7B", config, "aime", seed, k)
    tidy, samples = aggregate.collect(results, ["7B"])
    fit, _ = scaling.fit(samples, BENCH, n_boot=100)
    row = fit.set_index("benchmark").loc["AIME"]
    assert row["slope"] == pytest.approx(5.0) and pd.isna(row["examples_50"])
    assert row["examples_50_note"] == scaling.NOT_REACHED


def test_figure1_keeps_an_uncertain_denominator(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.setdefault("fig", fig))
    rec = pd.DataFrame({"size": ["1.5B", "1.5B", "7B", "7B"], "configuration": "full", "train_examples": [29, 58] * 2,
                        "benchmark": "GPQA", "recovered_pct": [10.0, 20.0, 30.0, 60.0], "undefined": False,
                        "gap": 5.0, "gap_z": 3.0, "ci_lo": [0.0, 5, 20, 50], "ci_hi": [30.0, 40, 40, 70],
                        "undefined_ci": [False, False, True, True]})
    figures.recovered(rec, ["1.5B", "7B"], ["GPQA"], tmp_path / "r.png")
    ax = drawn["fig"].axes[0]
    assert ax.get_legend_handles_labels()[1] == ["1.5B", "7B (uncertain denominator)"]
    assert "contains 0: 7B" in ax.get_title()


def test_pilot_with_one_subset_says_what_it_cannot_show(tmp_path, monkeypatch):
    """A pilot (base, skyline, LoRA, one full finetune): the fits, LoRA vs full and Figure 1 say
    "needs >= 2 subsets" instead of an empty figure or a LoRA-vs-full(29) ratio."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({"n_rows": 100}))
    for config, k in (("base", 0), ("skyline", 20), ("lora", 8), ("full-4", 5)):
        for task in ("aime", "gpqa"):
            for seed in (0, 1):
                put(tmp_path, "7B", config, task, seed, k)
    drawn = {}
    real_save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, path: drawn.setdefault(path.stem, fig) and real_save(fig, path))
    aggregate.run(tmp_path, ["7B"], BENCH, paper=None, n_boot=100, params={"7B": 7e9})
    rec = pd.read_csv(tmp_path / "recovered.csv")
    lvf = rec[rec["configuration"] == "lora_vs_full"]
    assert len(lvf) == 2 and lvf["recovered_pct"].isna().all() and lvf["reason"].str.contains("needs >= 2 subsets").all()
    fit = pd.read_csv(tmp_path / "scaling_fit.csv")
    assert fit["slope"].isna().all() and fit["left_out"].str.startswith("needs >= 2 subsets").all()

    def texts(name):
        return " ".join(t.get_text() for ax in drawn[name].axes for t in ax.texts)

    assert "needs >= 2 subsets" in texts("recovered") and "needs >= 2 subsets" in texts("scaling_fit")
