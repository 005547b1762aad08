# Aggregation: tidy table, Table 1 (mean ± s.e.; CSV, Markdown, LaTeX) with 95 % intervals,
# Recovered % and LoRA vs full, comparison with the paper's Table 1, figures (PNG + PDF), and one
# HTML page of it all (results/report.html, rule report). Outputs marked report(...) also appear in
#   snakemake --report report.zip
# with the captions in workflow/report/ (report.py uses the same captions). `snakemake status`
# prints what a rerun would do.


localrules:
    aggregate,
    report,
    status,


import json  # noqa: E402
import logging  # noqa: E402
import shlex  # noqa: E402


rule aggregate:
    input:
        evals=eval_outputs(),
        selections=[grid.selection(s, t) for s in SIZES for t in TRAINED + variants.trained_runs(config, s)],
        manifest=DATA_MANIFEST,
    output:
        **{f"fig_{name}": figure_output(name) for name in FIGURES},
        tidy="results/tidy.parquet",
        samples="results/samples.parquet",
        summary="results/summary.csv",
        summary_tasks="results/summary_tasks.csv",
        table=report(
            "results/table1.csv",
            caption=f"{REPORT}/table1.rst",
            category="Table 1",
            subcategory="Table 1",
            labels={"table": "Table 1 (CSV)"},
        ),
        markdown=report(
            "results/table1.md",
            caption=f"{REPORT}/table1.rst",
            category="Table 1",
            subcategory="Table 1",
            labels={"table": "Table 1 and Table 1b, 95 % intervals (Markdown)"},
        ),
        latex=report(
            "results/table1.tex",
            caption=f"{REPORT}/table1_tex.rst",
            category="Table 1",
            subcategory="Table 1",
            labels={"table": "Table 1 (LaTeX)"},
        ),
        recovered=report(
            "results/recovered.csv",
            caption=f"{REPORT}/recovered_table.rst",
            category="Table 1",
            subcategory="Recovered %",
            labels={"table": "Recovered % with 95 % intervals, LoRA vs full"},
        ),
        gains="results/gains.csv",
        comparison=report(
            "results/paper_comparison.csv",
            caption=f"{REPORT}/paper_comparison_table.rst",
            category="Comparison with the paper",
            subcategory="Table",
            labels={"table": "Ours vs the paper, per cell"},
        ),
        comparison_md="results/paper_comparison.md",
        gain="results/val_loss_gain.csv",
        stops=report(
            "results/stop_reasons.csv",
            caption=f"{REPORT}/stop_reasons.rst",
            category="What a score hides",
            subcategory="Why the answers stopped",
            labels={"table": "Stop reasons per cell"},
        ),
        stops_md="results/stop_reasons.md",
        robust=report(
            "results/table1_robust.csv",
            caption=f"{REPORT}/table1_robust.rst",
            category="What a score hides",
            subcategory="Second scorer",
            labels={"table": "Table 1, second scorer"},
        ),
        robust_md="results/table1_robust.md",
        agreement="results/scorer_agreement.csv",
        claim=report(
            "results/claim.csv",
            caption=f"{REPORT}/claim_table.rst",
            category="The paper's claim",
            subcategory="Table",
            labels={"table": "smallest subset with a positive gain, per size"},
        ),
        scaling="results/scaling_fit.csv",
        train_seeds=report(
            "results/table1_train_seeds.csv",
            caption=f"{REPORT}/table1_train_seeds.rst",
            category="Table 1",
            subcategory="Training seeds",
            labels={"table": "Table 1d: training and evaluation noise combined"},
        ),
        train_seeds_md="results/table1_train_seeds.md",
        claim_train_seeds=report(
            "results/claim_train_seeds.csv",
            caption=f"{REPORT}/claim_train_seeds.rst",
            category="The paper's claim",
            subcategory="Table",
            labels={"table": "the claim, training and evaluation noise combined"},
        ),
        scaling_train_seeds="results/scaling_fit_train_seeds.csv",
        variants="results/variants.csv",
        pdfs=expand("results/figures/{name}.pdf", name=FIGURES),
    log:
        "results/logs/aggregate.log",
    params:
        # every configured size, in the config's order: rerunning one size (--config 'sizes=[32B]')
        # keeps the other sizes' rows in Table 1 (aggregate.py reads whatever exists)
        sizes=" ".join(MODELS),
        configs=" ".join(CONFIGS),
        seeds=" ".join(str(s) for s in SEEDS),
        benchmarks=" ".join(f"{k}={','.join(v)}" for k, v in config["benchmarks"].items()),
        paper=grid.PAPER_TABLE,  # relative to the checkout (aggregate.py: elicit.repo_path)
        paper_sha256=external_sha256(repo_path(grid.PAPER_TABLE)),  # its content, not its (checkout's) path
        # + models.<size>.labels where set; a function: a string param is formatted with the wildcards
        # (a label with braces would be read as one), a function's value is not
        labels=lambda wc: canonical(grid.size_labels(config)),
        variants=" ".join(f"{v}={','.join(variants.evaluated(config, v))}" for v in variants.names(config)),
        params=" ".join(f"{s}={memory_plan_params(s)}" for s in MODELS),
    shell:
        "python -m elicit.run aggregate --results results --sizes {params.sizes} --configs {params.configs} "
        "--seeds {params.seeds} --benchmarks {params.benchmarks} --paper {params.paper} --out results "
        "--labels-json {params.labels:q} --variants {params.variants} --params {params.params} > {log} 2>&1"


rule report:
    """results/report.html: tables, figures with captions, plan and provenance, in one page."""
    input:
        rules.aggregate.output,
    output:
        report(
            "results/report.html",
            caption="../report/report_html.rst",
            category="Report",
            subcategory="One page",
            labels={"report": "Table 1, figures, plan and provenance"},
        ),
    log:
        "results/logs/report.log",
    params:
        # sorted keys: reordering a config file reruns nothing; the fail-fast gate only schedules the work
        config=lambda wc: shlex.quote(canonical({k: v for k, v in config.items() if k != "gate"})),
    shell:
        "python -m elicit.run report --results results --config-json {params.config} --out {output} > {log} 2>&1"


# `snakemake status` needs no --cores: it runs this one local rule and nothing else. It takes no
# lock either (as --nolock): it writes only its log and reads, and must never touch a live run's locks.
# It prints only its grid: Snakemake's banners and job lines (info) are dropped, its warnings and
# errors kept (a failed status job still says why).
if "status" in sys.argv[1:]:
    snakemake_locks.take_none()
    if workflow.resource_settings.cores is None:
        workflow.resource_settings.cores = 1
    from snakemake.logging import logger as _smk_logger  # noqa: E402

    _smk_logger.addFilter(lambda record: record.levelno >= logging.WARNING)


rule status:
    """Print the grid (this config's sizes × configurations × tasks) with the state of every
    seed: what a dry-run would run (outdated, missing), and what is corrupt, running, failed or
    incomplete (workflow/scripts/status.py); runs nothing else and is not part of `all`:
        snakemake status        (add --config 'sizes=[32B]' or --configfile as for a run)"""
    log:
        "results/logs/status.log",
    params:
        config=lambda wc: shlex.quote(json.dumps(config, default=str)),
        triggers=lambda wc: " ".join(
            sorted(t.name.lower().replace("_", "-") for t in workflow.dag_settings.rerun_triggers)
        ),
        snakefile=workflow.main_snakefile,
        sizes=" ".join(SIZES),
    shell:
        "python -m elicit.run status --config-json {params.config} --snakefile {params.snakefile} "
        "--rerun-triggers {params.triggers} --sizes {params.sizes} 2>&1 | tee {log}"
