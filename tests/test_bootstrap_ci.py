"""bootstrap_ci: hand-computed and exactly enumerable cases, pairing, undefined ratios, missing
seeds, and the coverage of the intervals on simulated evaluations with a known truth."""
import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest

# conftest.py does this too; repeated so the file also runs alone (pytest --noconftest)
from elicit.report import bootstrap_ci as bc

BENCH = {"AIME": ["aime24", "aime25"], "GPQA": ["gpqa"]}


def cell(size, cfg, te, task, scores, seeds=None, docs=None):
    """Sample rows of one (size, configuration, task) from scores [seeds, problems]."""
    scores = np.asarray(scores, float)
    S, P = scores.shape
    seeds = list(range(S)) if seeds is None else seeds
    docs = list(range(P)) if docs is None else docs
    return pd.DataFrame({"size": size, "configuration": cfg, "train_examples": te, "task": task,
                         "seed": np.repeat(seeds, P), "doc_id": docs * S, "score": scores.ravel()})


def samples(*cells):
    df = pd.concat(cells, ignore_index=True)
    df["train_examples"] = df["train_examples"].astype("Int64")
    return df


def row(frame, **key):
    sel = np.ones(len(frame), bool)
    for k, v in key.items():
        sel &= (frame[k] == v).to_numpy()
    assert sel.sum() == 1, (key, frame)
    return frame[sel].iloc[0]


# ---------------------------------------------------------------- (a) constant samples
def test_constant_samples_collapse_to_the_point():
    levels = {("base", None): 0.0, ("skyline", None): 1.0, ("lora", 1000): 0.5, ("full", 29): 0.25}
    df = samples(*[cell("7B", c, n, t, np.full((3, p), v)) for (c, n), v in levels.items()
                   for t, p in (("aime24", 3), ("aime25", 5), ("gpqa", 4))])
    out = bc.bootstrap(df, BENCH, n_boot=300, seed=1)
    s = out["scores"]
    assert s["mean"].tolist() == pytest.approx([0, 0, 100, 100, 50, 50, 25, 25])
    assert np.allclose(s["ci_lo"], s["mean"]) and np.allclose(s["ci_hi"], s["mean"])
    g = out["gains"]
    assert g["gain"].tolist() == pytest.approx([50, 50, 25, 25])
    assert np.allclose(g["ci_lo"], g["gain"]) and np.allclose(g["ci_hi"], g["gain"])
    r = out["recovered"]
    assert r["recovered_pct"].tolist() == pytest.approx([50, 50, 25, 25])
    assert np.allclose(r["ci_lo"], r["recovered_pct"]) and np.allclose(r["ci_hi"], r["recovered_pct"])
    assert not r["undefined_ci"].any() and (r["reason"] == "").all() and np.allclose(r["denom"], 100)
    lvf = out["lora_vs_full"]
    assert lvf["lora_vs_full_pct"].tolist() == pytest.approx([200, 200])
    assert np.allclose(lvf["ci_lo"], 200) and np.allclose(lvf["ci_hi"], 200)
    assert lvf["full_train_examples"].tolist() == [29, 29]


# ---------------------------------------------------------------- (b) exactly enumerable bootstrap
def exact_distribution(X):
    """Every equally likely draw of S seed indices and P problem indices of X [S, P] -> mean in %."""
    S, P = X.shape
    counts = Counter(round(100 * X[np.ix_(s, p)].mean(), 9) for s in itertools.product(range(S), repeat=S)
                     for p in itertools.product(range(P), repeat=P))
    total = sum(counts.values())
    return {v: k / total for v, k in counts.items()}


@pytest.mark.parametrize("X", [[[0, 1]], [[0], [1]]], ids=["2 problems x 1 seed", "1 problem x 2 seeds"])
def test_two_values_closed_form(X):
    """Mean of two resampled values {0, 1}: 0, 50, 100 with probabilities 1/4, 1/2, 1/4."""
    X = np.array(X, float)
    assert exact_distribution(X) == {0: 0.25, 50: 0.5, 100: 0.25}
    rep = bc.replicates(samples(cell("7B", "base", None, "gpqa", X)), {"GPQA": ["gpqa"]}, n_boot=4000, seed=3)
    r = rep[("7B", "GPQA")].reps[:, 0]
    freq = {v: np.mean(r == v) for v in (0, 50, 100)}
    assert sum(freq.values()) == 1
    sd = np.sqrt(0.25 * 0.75 / 4000)
    assert abs(freq[0] - 0.25) < 4.5 * sd and abs(freq[100] - 0.25) < 4.5 * sd
    out = bc.bootstrap(samples(cell("7B", "base", None, "gpqa", X)), {"GPQA": ["gpqa"]}, n_boot=4000, seed=3)
    assert out["scores"][["mean", "ci_lo", "ci_hi"]].iloc[0].tolist() == [50, 0, 100]
    # a 40% interval lies inside the middle atom (P(0) = 1/4 < 30%, P(<= 50) = 3/4 > 70%)
    out = bc.bootstrap(samples(cell("7B", "base", None, "gpqa", X)), {"GPQA": ["gpqa"]}, n_boot=4000, seed=3,
                       level=0.4)
    assert out["scores"][["ci_lo", "ci_hi"]].iloc[0].tolist() == [50, 50]


def test_seeds_and_problems_resampled_jointly_match_enumeration():
    """2 seeds x 3 problems: the replicate distribution is the exact two-way resampling one
    (108 equally likely draws), not cell-wise or seeds-only resampling."""
    X = np.array([[1, 0, 1], [0, 0, 1]], float)
    exact = exact_distribution(X)
    # mean 0: problem 2 never drawn (8/27) and either both seed draws are seed 1 (1/4) or only
    # problem 1 is drawn (1/27 of all problem draws, with the other 3/4 of the seed draws)
    assert exact[0] == pytest.approx(1 / 4 * 8 / 27 + 3 / 4 * 1 / 27)
    n = 20000
    r = bc.replicates(samples(cell("7B", "base", None, "gpqa", X)), {"GPQA": ["gpqa"]}, n_boot=n, seed=5)
    got = Counter(np.round(r[("7B", "GPQA")].reps[:, 0], 9))
    assert set(got) <= set(exact)
    for v, p in exact.items():
        assert abs(got[v] / n - p) < 4.5 * np.sqrt(p * (1 - p) / n) + 1e-3, (v, got[v] / n, p)


# ---------------------------------------------------------------- (c) point estimates
def test_point_estimates_match_plain_formulas():
    rng = np.random.default_rng(11)
    P = {"aime24": 3, "aime25": 5, "gpqa": 7}
    configs = [("base", None), ("skyline", None), ("lora", 1000), ("full", 29), ("full", 928)]
    rate = dict(zip(configs, (0.2, 0.8, 0.5, 0.4, 0.6)))
    parts = []
    for size in ("32B", "7B"):  # 32B first: sizes keep the order they are first seen in
        for c, n in configs:
            for t, p in P.items():
                seeds = [0, 1] if (size, c, n, t) == ("7B", "full", 29, "aime25") else [0, 1, 2]
                parts.append(cell(size, c, n, t, rng.random((len(seeds), p)) < rate[(c, n)], seeds=seeds))
    df = samples(*parts)
    out = bc.bootstrap(df, BENCH, n_boot=200, seed=0)
    # plain formulas: per task 100 * mean over problems, mean over seeds; n-weighted over tasks
    per_task = (df.groupby(["size", "configuration", "train_examples", "task", "seed"], dropna=False)["score"]
                .mean().mul(100).groupby(level=[0, 1, 2, 3], dropna=False).mean().reset_index())
    per_task["n"] = per_task["task"].map(P)
    expect = {}
    for bench, tasks in BENCH.items():
        sub = per_task[per_task["task"].isin(tasks)]
        for k, g in sub.groupby(["size", "configuration", "train_examples"], dropna=False):
            expect[(*k[:2], None if pd.isna(k[2]) else int(k[2]), bench)] = np.average(g["score"], weights=g["n"])
    s = out["scores"]
    got = {(r.size, r.configuration, None if pd.isna(r.train_examples) else int(r.train_examples), r.benchmark):
           r.mean for r in s.itertuples()}
    assert got == pytest.approx(expect)
    assert list(dict.fromkeys(s["size"])) == ["32B", "7B"]
    assert s[s["size"] == "7B"]["configuration"].tolist() == ["base"] * 2 + ["skyline"] * 2 + ["lora"] * 2 + ["full"] * 4
    assert s[s["size"] == "7B"]["train_examples"].tolist()[4:] == [1000, 1000, 29, 29, 928, 928]
    assert s["benchmark"].tolist()[:4] == ["AIME", "GPQA", "AIME", "GPQA"]
    for size, bench in itertools.product(("32B", "7B"), BENCH):
        e = {k[1:3]: v for k, v in expect.items() if k[0] == size and k[3] == bench}
        base, sky = e[("base", None)], e[("skyline", None)]
        assert abs(sky - base) > 1 and abs(e[("full", 928)] - base) > 1  # the ratios are defined
        for c, n in configs[2:]:
            assert row(out["gains"], size=size, configuration=c, train_examples=n, benchmark=bench)["gain"] == \
                pytest.approx(e[(c, n)] - base)
            rec = row(out["recovered"], size=size, configuration=c, train_examples=n, benchmark=bench)
            assert rec["recovered_pct"] == pytest.approx((e[(c, n)] - base) / (sky - base) * 100)
            assert rec["denom"] == pytest.approx(sky - base)
        lvf = row(out["lora_vs_full"], size=size, benchmark=bench)
        assert lvf["full_train_examples"] == 928
        assert lvf["lora_vs_full_pct"] == pytest.approx((e[("lora", 1000)] - base) / (e[("full", 928)] - base) * 100)


def test_two_tasks_pooled_by_problem_count():
    """aime24 3 problems at 1/3, aime25 5 problems at 4/5: (3 * 33.3 + 5 * 80) / 8 = 62.5 (the
    unweighted mean of the tasks would be 56.7); and a task mean is the mean over its seeds."""
    df = samples(cell("7B", "base", None, "aime24", [[1, 0, 0]]), cell("7B", "base", None, "aime25", [[1, 1, 1, 1, 0]]),
                 cell("7B", "base", None, "gpqa", [[1, 0], [1, 1]]))
    s = bc.bootstrap(df, BENCH, n_boot=100)["scores"]
    assert s["mean"].tolist() == pytest.approx([62.5, 75.0])


# ---------------------------------------------------------------- (d) pairing
def test_identical_trained_and_base_give_a_zero_gain_interval():
    rng = np.random.default_rng(2)
    X = {t: rng.random((4, p)) < 0.4 for t, p in (("aime24", 30), ("aime25", 30), ("gpqa", 50))}
    df = samples(*[cell("14B", c, n, t, x) for c, n in (("base", None), ("full", 58)) for t, x in X.items()])
    out = bc.bootstrap(df, BENCH, n_boot=500, seed=4)
    g = out["gains"]
    assert (g["gain"] == 0).all() and (g["ci_lo"] == 0).all() and (g["ci_hi"] == 0).all()
    s = out["scores"]
    assert ((s["ci_hi"] - s["ci_lo"]) > 10).all()  # each score alone is uncertain; an unpaired gain would be too


# ---------------------------------------------------------------- (e) undefined ratios
def test_denominator_interval_containing_zero_is_undefined():
    rng = np.random.default_rng(8)
    base = rng.random((4, 40)) < 0.3
    sky = base.copy()
    sky[0, :3] = ~sky[0, :3]  # skyline differs from base by three answers of one seed
    high = rng.random((4, 40)) < 0.9
    df = samples(cell("1.5B", "base", None, "gpqa", base), cell("1.5B", "skyline", None, "gpqa", sky),
                 cell("1.5B", "full", 29, "gpqa", high), cell("1.5B", "lora", 1000, "gpqa", base),
                 cell("32B", "base", None, "gpqa", base), cell("32B", "skyline", None, "gpqa", high),
                 cell("32B", "full", 29, "gpqa", base), cell("32B", "lora", 1000, "gpqa", high))
    out = bc.bootstrap(df, {"GPQA": ["gpqa"]}, n_boot=500, seed=0)
    r = row(out["recovered"], size="1.5B", configuration="full")
    assert r["undefined_ci"] and np.isnan(r["ci_lo"]) and np.isnan(r["ci_hi"]) and "not clear of 0" in r["reason"]
    assert r["denom_lo"] <= 0 <= r["denom_hi"] and np.isfinite(r["recovered_pct"])
    assert r["recovered_pct"] == pytest.approx((high.mean() - base.mean()) / (sky.mean() - base.mean()) * 100)
    ok = row(out["recovered"], size="32B", configuration="lora")
    assert not ok["undefined_ci"] and ok["reason"] == "" and ok["denom_lo"] > 0
    assert ok["recovered_pct"] == pytest.approx(100) and ok["ci_lo"] == pytest.approx(100) == ok["ci_hi"]
    lvf = row(out["lora_vs_full"], size="32B")  # full == base: the denominator is 0 in every replicate
    assert lvf["undefined_ci"] and np.isnan(lvf["lora_vs_full_pct"]) and np.isnan(lvf["ci_lo"])
    assert lvf["denom_lo"] == 0 == lvf["denom_hi"] and "full(29) - base" in lvf["reason"]
    lvf = row(out["lora_vs_full"], size="1.5B")  # lora == base, full far above: 0 %, defined
    assert not lvf["undefined_ci"] and lvf["lora_vs_full_pct"] == 0 and lvf["ci_lo"] == 0 == lvf["ci_hi"]


def test_no_base_or_skyline_no_ratio_rows():
    df = samples(cell("7B", "base", None, "gpqa", [[1, 0]]), cell("7B", "full", 29, "gpqa", [[1, 1]]),
                 cell("3B", "skyline", None, "gpqa", [[1, 0]]), cell("3B", "full", 29, "gpqa", [[1, 1]]))
    out = bc.bootstrap(df, {"GPQA": ["gpqa"]}, n_boot=50)
    assert len(out["scores"]) == 4 and out["recovered"].empty and out["lora_vs_full"].empty
    assert out["gains"][["size", "gain"]].values.tolist() == [["7B", 50.0]]


# ---------------------------------------------------------------- (f) missing seeds
def test_missing_seeds_use_the_restricted_seed_weights():
    """full-29 lacks seed 3, lora has seed 0 only. They keep the shared draws restricted to their
    seeds; a replicate that drew none of a configuration's seeds is NaN for it and dropped, so lora
    is NaN in P(seed 0 not drawn) = (3/4)^4 = 32% of the replicates, full-29 in (1/4)^4 = 0.4%."""
    rng = np.random.default_rng(6)
    full = {c: rng.random((4, 30)) < p for c, p in (("base", 0.2), ("skyline", 0.8), ("full", 0.5), ("lora", 0.5))}
    parts = [cell("7B", "base", None, "gpqa", full["base"]), cell("7B", "skyline", None, "gpqa", full["skyline"])]
    partial = [cell("7B", "full", 29, "gpqa", full["full"][:3], seeds=[0, 1, 2]),
               cell("7B", "lora", 1000, "gpqa", full["lora"][:1], seeds=[0])]
    bench, n = {"GPQA": ["gpqa"]}, 4000
    out = bc.bootstrap(samples(*parts, *partial), bench, n_boot=n, seed=9)
    f = row(out["scores"], configuration="full")
    assert f["mean"] == pytest.approx(100 * full["full"][:3].mean())
    assert row(out["scores"], configuration="lora")["mean"] == pytest.approx(100 * full["lora"][0].mean())
    assert out["scores"][["ci_lo", "ci_hi"]].notna().all().all() and out["recovered"]["ci_lo"].notna().all()
    rep = bc.replicates(samples(*parts, *partial), bench, n_boot=n, seed=9)[("7B", "GPQA")]
    nan = np.isnan(rep.reps).mean(axis=0)
    assert nan[:2].tolist() == [0, 0]
    assert abs(nan[2] - 0.75 ** 4) < 0.03 and nan[3] < 0.02  # lora (order base, skyline, lora, full)
    # the configurations with every seed see the very same draws with or without the partial ones
    alone = bc.replicates(samples(*parts), bench, n_boot=n, seed=9)[("7B", "GPQA")]
    assert np.array_equal(alone.reps, rep.reps[:, :2])


# ---------------------------------------------------------------- API details
def test_empty_input_and_columns():
    empty = samples(cell("7B", "base", None, "gpqa", np.zeros((0, 0)))).iloc[:0]
    out = bc.bootstrap(empty, BENCH)
    assert list(out) == ["scores", "gains", "recovered", "lora_vs_full"]
    for name, frame in out.items():
        assert frame.empty and list(frame.columns) == bc.COLUMNS[name]
    assert out["recovered"]["undefined_ci"].dtype == bool and out["scores"]["train_examples"].dtype == "Int64"


def test_deterministic_given_seed_and_dtypes():
    rng = np.random.default_rng(0)
    df = samples(*[cell("7B", c, n, t, rng.random((4, 20)) < 0.5) for c, n in
                   (("base", None), ("skyline", None), ("lora", 1000), ("full", 29)) for t in ("aime24", "aime25", "gpqa")])
    a, b, c = (bc.bootstrap(df, BENCH, n_boot=300, seed=s) for s in (1, 1, 2))
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    assert not np.allclose(a["scores"]["ci_lo"], c["scores"]["ci_lo"])
    assert pd.isna(a["scores"]["train_examples"].iloc[0]) and a["recovered"]["train_examples"].dtype == "Int64"


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.drop(index=3), "of the task's"),
    (lambda d: pd.concat([d, d.iloc[:1]]), "twice"),
    (lambda d: d.assign(configuration="sft"), "unknown configurations"),
    (lambda d: d.assign(score=d["score"] * 2), "in \\[0, 1\\]"),
])
def test_bad_input_is_refused(mutate, message):
    df = samples(cell("7B", "base", None, "gpqa", np.ones((2, 3)) * 0.6))
    with pytest.raises(ValueError, match=message):
        bc.bootstrap(mutate(df), {"GPQA": ["gpqa"]}, n_boot=10)


# ---------------------------------------------------------------- coverage on simulated evaluations
# Each simulated evaluation: 30 problems of difficulty p ~ Beta(0.5, 1.5) (most hard, a few easy, as
# on AIME), drawn afresh; 4 seeds of Bernoulli(p) answers for the base and Bernoulli(q), q = 1 - (1-p)^2,
# for a trained model (correlated with the base through the problems). The truth is the expected
# score over problems: E[p] = 25 %, E[q] = 1 - E[(1-p)^2] = 37.5 %, gain 12.5 points. Every
# evaluation is one "size" of one bootstrap call (sizes draw independent streams).
A, B, N_SETS, N_BOOT = 0.5, 1.5, 300, 400
TRUE = {"base": 100 * A / (A + B), "full": 100 * (1 - B * (B + 1) / ((A + B) * (A + B + 1)))}


def simulated(n_sets, problems=30, seeds=4, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    p = rng.beta(A, B, (n_sets, problems))
    answers = {"base": rng.random((n_sets, seeds, problems)) < p[:, None],
               "full": rng.random((n_sets, seeds, problems)) < (1 - (1 - p) ** 2)[:, None]}
    return samples(*[pd.DataFrame({"size": np.repeat([f"sim{i}" for i in range(n_sets)], seeds * problems),
                                   "configuration": c, "train_examples": None if c == "base" else 29, "task": "t",
                                   "seed": np.tile(np.repeat(np.arange(seeds), problems), n_sets),
                                   "doc_id": np.tile(np.arange(problems), n_sets * seeds),
                                   "score": x.ravel().astype(float)}) for c, x in answers.items()])


@pytest.fixture(scope="module")
def simulation():
    df = simulated(N_SETS, rng_seed=2024)
    # seeds only: the problems of a seed averaged into one, so only the 4 seeds are resampled (the
    # uncertainty a standard error across seeds describes)
    seeds_only = df.groupby(["size", "configuration", "train_examples", "task", "seed"], dropna=False,
                            sort=False)["score"].mean().reset_index().assign(doc_id=0)
    run = dict(n_boot=N_BOOT, seed=7)
    return {"two-way": bc.bootstrap(df, {"B": ["t"]}, **run),
            "problems": bc.bootstrap(df, {"B": ["t"]}, **run, resample_seeds=False),
            "seeds": bc.bootstrap(seeds_only, {"B": ["t"]}, **run)}


def coverage(out):
    """{statistic: (coverage of the truth, mean interval width / (2 * 1.96 * sd of the point estimate
    over the simulated evaluations))}: the second is 1 for an interval of the right width."""
    res = {}
    s = out["scores"]
    frames = [(c, s[s["configuration"] == c], "mean", TRUE[c]) for c in ("base", "full")]
    for name, f, col, truth in frames + [("gain", out["gains"], "gain", TRUE["full"] - TRUE["base"])]:
        assert len(f) == N_SETS
        res[name] = (((f["ci_lo"] <= truth) & (truth <= f["ci_hi"])).mean(),
                     (f["ci_hi"] - f["ci_lo"]).mean() / (2 * 1.96 * f[col].std()))
    return res


def test_coverage_problems_only(simulation):
    """Resampling problems (seeds averaged) targets the right variance: coverage in 0.88-0.99,
    width within 15 % of the ideal. Typically a little under 95 %: with 30 problems the bootstrap
    variance is (P-1)/P of the plug-in one and the percentile interval uses normal, not t_29,
    quantiles (and skewed, 0/1-heavy problem means), so a little anti-conservative. 300
    evaluations: the coverage estimate has a standard error of about 0.013."""
    for name, (cov, width) in coverage(simulation["problems"]).items():
        assert 0.88 <= cov <= 0.99 and 0.85 <= width <= 1.15, (name, cov, width)


def test_coverage_two_way_is_conservative(simulation):
    """The default resamples problems AND seeds. The per-answer noise then enters twice (through
    the problems' means and the seeds' means), so the intervals are too wide: scores by ~10-30 %,
    gains, where the problem difficulty cancels and the noise dominates, by ~40-60 %. Coverage
    >= 0.93, widths pinned to those bands (observed: see the module docstring)."""
    res = coverage(simulation["two-way"])
    for name, (cov, width) in res.items():
        assert cov >= 0.93, (name, cov)
    assert all(1.0 <= res[c][1] <= 1.45 for c in ("base", "full")), res
    assert 1.2 <= res["gain"][1] <= 1.9, res


def test_seeds_only_intervals_undercover(simulation):
    """The problems must be resampled: seeds alone miss the problem-sampling variance."""
    res = coverage(simulation["seeds"])
    assert res["base"][0] < 0.8 and res["full"][0] < 0.8, res


def test_paired_gain_interval_is_narrower_than_unpaired(simulation):
    """Pairing by problem: the gain's interval is narrower than the two scores' intervals combined
    as if independent (sqrt(w_base^2 + w_trained^2)), since the problems' difficulty cancels."""
    for out in (simulation["two-way"], simulation["problems"]):
        s, g = out["scores"], out["gains"]
        w = {c: (s.loc[s["configuration"] == c, "ci_hi"] - s.loc[s["configuration"] == c, "ci_lo"]).to_numpy()
             for c in ("base", "full")}
        ratio = ((g["ci_hi"] - g["ci_lo"]).to_numpy() / np.hypot(w["base"], w["full"])).mean()
        assert ratio < 0.85, ratio
