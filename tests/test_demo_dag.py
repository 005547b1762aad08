"""The whole demo DAG runs to the end in a temporary directory (the `make demo` path)."""
import json
import re

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def variant_runs(size: str, kind: str = "") -> int:
    """Trainings of `size` (of configurations starting with `kind`) that the demo's variants add
    (lora@lora-alpha1: a LoRA with alpha 1; full-8@tseed1: a second training seed, tiny-a only)."""
    from elicit.checks.config import check
    from elicit.variants import trained_runs

    runs = trained_runs(check(yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())), size)
    return sum(r.startswith(kind) for r in runs)


def variant_cells() -> int:
    """Evaluated models the demo's variants add, over every size."""
    from elicit.checks.config import check
    from elicit.variants import cells

    cfg = check(yaml.safe_load((ROOT / "config" / "demo.yaml").read_text()))
    return sum(len(cells(cfg, s)) for s in cfg["sizes"])


from tests.conftest import snakemake  # noqa: E402
from tests.helpers import planned_jobs  # noqa: E402


@pytest.fixture(scope="session")
def demo(demo_run):
    return demo_run


@pytest.mark.slow
def test_table1_has_every_cell(demo):
    t1 = pd.read_csv(demo / "results" / "table1.csv")
    n_sub = len(DEMO["data"]["subsets"])
    assert len(t1) == len(DEMO["sizes"]) * (3 + n_sub)
    for size in DEMO["sizes"]:
        rows = t1[t1["size"] == size]
        assert list(rows["configuration"]) == ["base", "skyline", "lora"] + ["full"] * n_sub
        assert sorted(rows["train_examples"].dropna().astype(int)) == sorted(DEMO["data"]["subsets"] + [48])
    for bench in DEMO["benchmarks"]:
        assert t1[bench].str.match(r"^\d+\.\d\d ± \d+\.\d\d$").all()
    assert (demo / "results" / "figures" / "recovered.png").stat().st_size > 10_000
    md = (demo / "results" / "table1.md").read_text()
    assert DEMO["labels"]["base"] in md and "Qwen2.5-Instruct" not in md  # the demo says what it is


@pytest.mark.slow
def test_eval_cells_record_settings(demo):
    cells = sorted((demo / "results" / "eval").glob("*/*/*/seed*.json"))
    models = len(DEMO["sizes"]) * (3 + len(DEMO["data"]["subsets"])) + variant_cells()
    assert variant_cells() == 3  # the variant's LoRA in each size, full-8's second training seed in tiny-a
    assert len(cells) == models * 2 * len(DEMO["eval"]["seeds"])
    d = json.loads(cells[0].read_text())
    gen = d["generation"]
    assert gen["do_sample"] is True and gen["temperature"] == DEMO["eval"]["temperature"]
    assert gen["max_gen_toks"] == DEMO["eval"]["max_gen_toks"]
    assert 0 <= d["score"] <= 100


@pytest.mark.slow
def test_what_a_score_hides(demo):
    """Stop reasons per answer, the second scorer's table and agreement, the scaling fit and its
    figure, the variant's rows, the report's demo banner."""
    res = demo / "results"
    samples = pd.read_parquet(res / "samples.parquet")
    assert samples["stop_reason"].notna().all() and (samples["n_new_tokens"] <= DEMO["eval"]["max_gen_toks"]).all()
    stops = pd.read_csv(res / "stop_reasons.csv")
    assert (stops[["eos", "stop", "truncated"]].sum(axis=1) == stops["answers"]).all()
    assert len(stops) == len(DEMO["sizes"]) * (3 + len(DEMO["data"]["subsets"])) * len(DEMO["benchmarks"])
    assert "Why the answers stopped" in (res / "stop_reasons.md").read_text()
    assert list(pd.read_csv(res / "table1_robust.csv").columns) == list(pd.read_csv(res / "table1.csv").columns)
    agree = pd.read_csv(res / "scorer_agreement.csv")
    assert agree["answers"].sum() == len(samples)
    fit = pd.read_csv(res / "scaling_fit.csv")
    assert set(fit.columns) >= {"slope", "slope_lo", "slope_hi", "examples_50", "examples_50_note", "params"}
    assert (res / "figures" / "scaling_fit.png").stat().st_size > 10_000
    var = pd.read_csv(res / "variants.csv")
    alpha, tseed = var[var["variant"] == "lora-alpha1"], var[var["variant"] == "tseed1"]
    assert set(alpha["configuration"]) == {"lora"} and len(alpha) == len(DEMO["sizes"]) * len(DEMO["benchmarks"])
    assert len(tseed) == len(DEMO["benchmarks"]) and len(var) == len(alpha) + len(tseed)
    assert "Table 1c. Variants" in (res / "table1.md").read_text()
    assert "Demo run." in (res / "report.html").read_text()
    claim = pd.read_csv(res / "claim.csv")  # the paper's claim: a row per size and benchmark, a verdict each
    assert len(claim) == (len(DEMO["sizes"]) + 1) * len(DEMO["benchmarks"])
    assert set(claim.loc[claim["row"] == "verdict", "verdict"]) <= {"falls", "stays", "rises (against the claim)",
                                                                    "no size has a positive gain"}
    assert (res / "figures" / "claim.png").stat().st_size > 10_000 and "id='claim'" in (res / "report.html").read_text()


@pytest.mark.slow
def test_a_second_training_seed_end_to_end(demo):
    """train.seeds [0, 1] for full-8 of tiny-a (config/demo.yaml): trained, selected and evaluated as
    cells full-8@tseed1; Table 1 keeps the first seed; Table 1d averages both runs; the claim and the
    fit under both noises; the report shows Table 1d."""
    res, size = demo / "results", DEMO["train"]["seed_sizes"][0]
    assert (res / "models" / size / "full-8@tseed1" / "selection.json").exists()
    # the same base model, table and split; other settings (--seed 1): another run, not a copy of full-8
    first, second = (json.loads(next((res / "train" / size / run / "checkpoints").glob("step-*/provenance.json"))
                                .read_text())["fingerprint_parts"] for run in ("full-8", "full-8@tseed1"))
    assert first.pop("settings") != second.pop("settings") and first == second
    assert not (res / "models" / DEMO["sizes"][1] / "full-8@tseed1").exists()
    assert len(list((res / "eval" / size / "full-8@tseed1").glob("*/seed*.json"))) == 2 * len(DEMO["eval"]["seeds"])
    t1, d = pd.read_csv(res / "summary.csv"), pd.read_csv(res / "table1_train_seeds.csv")
    var = pd.read_csv(res / "variants.csv").query("variant == 'tseed1'")
    assert len(d) == len(t1) and (d["train_seeds"] == 1).sum() == len(d) - len(DEMO["benchmarks"])
    for bench in DEMO["benchmarks"]:
        key = (d["size"] == size) & (d["train_examples"] == 8) & (d["benchmark"] == bench)
        row = d[key].iloc[0]
        first = t1[(t1["size"] == size) & (t1["train_examples"] == 8) & (t1["benchmark"] == bench)]["mean"].iloc[0]
        second = var[(var["train_examples"] == 8) & (var["benchmark"] == bench)]["mean"].iloc[0]
        assert row["train_seeds"] == 2 and row["first_mean"] == pytest.approx(first)
        assert row["mean"] == pytest.approx((first + second) / 2) and row["ci_lo"] <= row["mean"] <= row["ci_hi"]
    claim = pd.read_csv(res / "claim_train_seeds.csv")
    assert list(claim.columns) == list(pd.read_csv(res / "claim.csv").columns) and len(claim) > 0
    assert (res / "scaling_fit_train_seeds.csv").exists()
    assert "Table 1d. Training and evaluation noise combined" in (res / "report.html").read_text()


@pytest.mark.slow
def test_skyline_beats_base_in_demo(demo):
    s = pd.read_csv(demo / "results" / "summary.csv")
    mean = s.set_index(["size", "configuration", "benchmark"])["mean"]
    for size in DEMO["sizes"]:
        assert mean[(size, "skyline", "AIME")] > mean[(size, "base", "AIME")]


def signal_problems(results) -> list[str]:
    """What keeps the demo's Table 1 from showing real signal (config/demo.yaml's design), per
    size, from means over the evaluation seeds: base < full-small < full-large < skyline on at
    least one benchmark and <= on the other; Recovered % of the largest subset strictly
    between 0 and 100 where the ladder is strict; the LoRA above base on at least one."""
    s = pd.read_csv(results / "summary.csv")
    rec = pd.read_csv(results / "recovered.csv")
    small, large = sorted(DEMO["data"]["subsets"])

    def mean(size, config, bench, n=None):
        rows = s[(s["size"] == size) & (s["configuration"] == config) & (s["benchmark"] == bench)]
        if n is not None:
            rows = rows[rows["train_examples"] == n]
        assert len(rows) == 1, (size, config, bench, n)
        return float(rows["mean"].iloc[0])

    problems = []
    for size in DEMO["sizes"]:
        strict = []
        for bench in DEMO["benchmarks"]:
            ladder = [mean(size, "base", bench), mean(size, "full", bench, small),
                      mean(size, "full", bench, large), mean(size, "skyline", bench)]
            if any(a > b for a, b in zip(ladder, ladder[1:])):
                problems.append(f"{size} {bench}: base, full-{small}, full-{large}, skyline = {ladder} not ordered")
            elif all(a < b for a, b in zip(ladder, ladder[1:])):
                strict.append(bench)
        if not strict:
            problems.append(f"{size}: no benchmark with base < full-{small} < full-{large} < skyline")
        for bench in strict:
            r = rec[(rec["size"] == size) & (rec["configuration"] == "full") & (rec["train_examples"] == large)
                    & (rec["benchmark"] == bench)]["recovered_pct"]
            if not (len(r) == 1 and 0 < float(r.iloc[0]) < 100):
                problems.append(f"{size} {bench}: Recovered % of full-{large} = {list(r)}, not in (0, 100)")
        if not any(mean(size, "lora", b) > mean(size, "base", b) for b in DEMO["benchmarks"]):
            problems.append(f"{size}: the LoRA does not beat base on any benchmark")
    return problems


@pytest.mark.slow
def test_demo_shows_signal(demo):
    """The finetunes' scores rise with data between base and the oracle skyline (not a
    column of zeros, which a broken loss mask, chat template or extractor would also give;
    tests/test_demo_signal.py breaks those one at a time)."""
    assert signal_problems(demo / "results") == []


@pytest.mark.slow
def test_selection_and_metrics_layout(demo):
    for size in DEMO["sizes"]:
        for n in DEMO["data"]["subsets"]:
            rows = [json.loads(line) for line in
                    (demo / "results" / "train" / size / f"full-{n}" / "metrics.jsonl").read_text().splitlines()]
            assert rows[0]["step"] == 0 and rows[0]["val_loss"] > 0
            sel = json.loads((demo / "results" / "models" / size / f"full-{n}" / "selection.json").read_text())
            assert {"selected_step", "best_step", "best_val_loss", "selected_val_loss", "base_val_loss"} <= set(sel)
            assert sel["selected_val_loss"] <= sel["best_val_loss"] + DEMO["train"]["tolerance"]
            kept = list((demo / "results" / "train" / size / f"full-{n}" / "checkpoints").glob("step-*"))
            assert [p.name for p in kept] == [f"step-{sel['selected_step']}"]


@pytest.mark.slow
def test_every_result_file_follows_the_umask(demo):
    """Weights too (checkpoints, `.done` copies, published and demo models): safetensors makes 0600
    files, which the group sharing a project directory could not read (issue 29, item 8). The test
    process's umask is the DAG's."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    wrong = [(str(p.relative_to(demo)), oct(p.stat().st_mode & 0o777)) for p in (demo / "results").rglob("*")
             if p.is_file() and not p.is_symlink() and p.stat().st_mode & 0o666 != 0o666 & ~mask]
    assert not wrong, wrong[:10]


@pytest.mark.slow
def test_every_training_is_tracked(demo):
    """train.tracking: tensorboard (config/demo.yaml): each run's event files hold its validation
    losses, read back by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in sorted((demo / "results" / "train").glob("*/*/metrics.jsonl")):
        rows = [json.loads(line) for line in run.read_text().splitlines()]
        events = EventAccumulator(str(run.parent))  # the run folder: TensorBoard names it <size>/<config>
        events.Reload()
        assert {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s"} <= set(events.Tags()["scalars"])
        if rows[0]["val_loss"] is not None:  # not the LoRA (no validation set)
            val = {e.step: e.value for e in events.Scalars("val/loss")}
            assert val == pytest.approx({r["step"]: r["val_loss"] for r in rows}, rel=1e-6), run


@pytest.mark.slow
def test_one_report_holds_the_whole_story(demo, tmp_path):
    """snakemake --report: the workflow description, Table 1, every figure with its caption, and the
    project's page with the plan and the provenance."""
    import zipfile

    snakemake(demo, "--report", str(tmp_path / "report.zip"))
    with zipfile.ZipFile(tmp_path / "report.zip") as z:
        names = z.namelist()
        text = "".join(z.read(n).decode(errors="replace") for n in names if n.endswith((".js", ".html")))
    files = [n for n in names if "/data/raw/" in n]  # report/data/raw/<id>/<file name>
    for want in ("table1.csv", "table1.tex", "recovered.csv", "report.html",
                 *(f"{f}.png" for f in ("recovered", "val_loss_gain", "bars", "absolute", "paper_comparison",
                                        "training_curves"))):
        assert any(n.endswith(f"/{want}") for n in files), (want, names)
    assert "Steps (one rule each)" in text  # workflow/report/workflow.rst
    assert "problem-weighted mean" in text  # Table 1's caption
    page = next(n for n in files if n.endswith("/report.html"))
    with zipfile.ZipFile(tmp_path / "report.zip") as z:
        html = z.read(page).decode()
        check_report_index(z.read("report/report.html").decode())
    assert "<h2 id='plan'>" in html and "<h2 id='provenance'>" in html


def check_report_index(index: str) -> None:
    """Issue 31, the index page of `snakemake --report`: every entry in a real subcategory (none in
    "Other"), table1.md an entry of Table 1, the figures labelled by their titles, and each rule
    once in the rule graph (Snakemake drew a rule once per DAG level: the evaluation rules twice)."""
    from elicit.report.figure_names import NAMES, title

    def var(name):
        line = index.rsplit(f"var {name} = ", 1)[1].split("\n", 1)[0]  # the data, after the JS libraries
        return json.loads(line.rstrip().rstrip(";"))

    categories = var("categories")
    assert all(sub and "Other" not in sub for sub in categories.values()), categories
    assert "results/table1.md" in categories["Table 1"]["Table 1"]
    labels = {path.split("/")[-1]: entry["labels"] for path, entry in var("results").items()}
    assert {labels[f"{n}.png"]["figure"] for n in NAMES} == {title(n) for n in NAMES}
    assert all(re.match(r"Figure S?\d\. ", title(n)) for n in NAMES)
    rules = [node["rule"] for node in var("rulegraph_spec")["data"][0]["values"]]
    assert len(rules) == len(set(rules)) and any(r.startswith("evaluate_") for r in rules), rules


@pytest.mark.slow
def test_nothing_left_to_do_then_one_deleted_cell(demo):
    out = snakemake(demo, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr
    victim = demo / "results" / "eval" / DEMO["sizes"][0] / "full-8" / "demo_gpqa" / "seed1.json"
    victim.unlink()
    # the job of both seeds of that cell: seed0 is restored from the finished-cell cache, not regenerated
    assert planned_jobs(demo) == {"evaluate_demo_gpqa_seeds_0_1": 1, "aggregate": 1, "report": 1, "all": 1,
                                  "total": 4, "evaluate": 1}
    snakemake(demo)
    assert victim.exists()


@pytest.mark.slow
def test_editing_code_does_not_retrain(demo):
    script = ROOT / "workflow" / "scripts" / "train.py"
    os_utime = __import__("os").utime
    os_utime(script)  # as if edited: newer than every output
    out = snakemake(demo, "-n")
    assert "Nothing to be done" in out.stdout + out.stderr


@pytest.mark.slow
def test_changing_lora_lr_reruns_only_lora(demo, tmp_path):
    n_sizes, n_tasks, n_seeds = len(DEMO["sizes"]), len(DEMO["eval"]["tasks"]), len(DEMO["eval"]["seeds"])
    (tmp_path / "lr.yaml").write_text(yaml.safe_dump({"lora": {**DEMO["lora"], "lr": DEMO["lora"]["lr"] * 2}}))
    jobs = planned_jobs(demo, "--configfile", str(ROOT / "config" / "demo.yaml"), str(tmp_path / "lr.yaml"))
    loras = 1 + variant_runs(DEMO["sizes"][0], "lora")  # the LoRA and the variant's LoRA (alpha 1, the same lr)
    assert loras == 2 and all(1 + variant_runs(s, "lora") == loras for s in DEMO["sizes"])
    assert jobs["train"] == n_sizes * loras and jobs["select_checkpoint"] == n_sizes * loras
    assert jobs["evaluate"] == n_sizes * loras * n_tasks and n_seeds == 2  # the LoRA cells only, both seeds per job
    assert "split_data" not in jobs and "demo_base" not in jobs


@pytest.mark.slow
def test_force_one_size_plans_only_that_size(demo):
    a, b = DEMO["sizes"]
    out = snakemake(demo, "-n", "--config", f"sizes=[{a}]", "--forcerun", "train")
    text = out.stdout + out.stderr
    assert f"wildcards: size={a}" in text and f"size={b}" not in text
    jobs = planned_jobs(demo, "--config", f"sizes=[{a}]", "--forcerun", "train")
    assert jobs["train"] == 1 + len(DEMO["data"]["subsets"]) + variant_runs(a) and variant_runs(a) == 2
    assert "split_data" not in jobs and "fetch_data" not in jobs


@pytest.mark.slow
def test_changing_one_sizes_training_setting_reruns_only_that_size(demo, tmp_path):
    """A per-size experiment setting (models.<size>.train.deepspeed) reruns that size's
    training, selection and evaluation of its trained models; the other size is untouched."""
    a, b = DEMO["sizes"]
    train_b = {**DEMO["models"][b]["train"], "deepspeed": "zero2"}
    (tmp_path / "ds.yaml").write_text(yaml.safe_dump({"models": {b: {"train": train_b}}}))
    args = ("--configfile", str(ROOT / "config" / "demo.yaml"),
            str(tmp_path / "ds.yaml"))
    n_trained = 1 + len(DEMO["data"]["subsets"]) + variant_runs(b)  # tiny-b: no second training seed
    jobs = planned_jobs(demo, *args)
    assert jobs["train"] == jobs["select_checkpoint"] == n_trained
    assert jobs["evaluate"] == n_trained * len(DEMO["eval"]["tasks"])  # both seeds in one job
    text = (snakemake(demo, "-n", *args).stdout)
    assert f"size={b}" in text and f"size={a}" not in text
