#!/usr/bin/env python
"""One self-contained HTML page of a run: results/report.html (the `report` rule, part of `all`).

Holds Table 1 (and its 95 % intervals), Recovered % with LoRA vs full, the comparison with the
paper, every figure (embedded PNG, PDF beside it) with its caption, the GPU-hour and memory plan,
and the provenance: data and hub revisions, task datasets, package versions, the config. Captions
come from workflow/report/*.rst, the same files `snakemake --report` uses.

Usage:
  python workflow/scripts/report.py --results results --config-json '<config as JSON>' \\
      --out results/report.html
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import math
import re
from pathlib import Path

import pandas as pd
import yaml

from elicit import grid
from elicit.atomic import read_json, write_text
from elicit.report import figure_names

CAPTIONS = Path(__file__).resolve().parents[1] / "report"
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}td,th{border:1px solid #ccc;padding:.2em .5em}
th{background:#f4f4f4}figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:.9em;color:#444}
code{background:#f4f4f4;padding:0 .2em}pre{background:#f8f8f8;padding:.6em;overflow-x:auto;font-size:.8em}"""


def caption(name: str) -> str:
    """workflow/report/<name>.rst as HTML, rendered by docutils (the reStructuredText that
    `snakemake --report` renders from the same files; no Jinja in them)."""
    from docutils.core import publish_parts

    text = (CAPTIONS / f"{name}.rst").read_text()
    return publish_parts(text, writer="html5", settings_overrides={
        "report_level": 5, "halt_level": 2, "input_encoding": "unicode", "embed_stylesheet": False})["fragment"]


def table(path: Path, title: str, cap: str | None = None, shape=None) -> str:
    """A CSV as an HTML table, its values formatted by `shape` (a DataFrame -> DataFrame of text)."""
    if not path.exists():
        return f"<h3>{title}</h3><p>not produced yet: {html.escape(str(path))}</p>"
    df = pd.read_csv(path)
    df = shape(df) if shape else df.map(cell)
    return (f"<h3 id='{path.stem}_table'>{title}</h3>" + (caption(cap) if cap else "")
            + df.to_html(index=False, na_rep="—", border=0))


def cell(v) -> str:
    """A value of a results table as text: 2 decimals, '—' for none, ±∞ spelt out (never `inf`/`nan`)."""
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        return ("+∞" if v > 0 else "−∞") if math.isinf(v) else f"{v:.2f}"
    return "—" if v is None else str(v)


def recovered_display(df: pd.DataFrame) -> pd.DataFrame:
    """recovered.csv for reading: Recovered % with its 95 % interval (or why it is undefined), and
    the denominator skyline − base with its interval and z (±∞ where both standard errors are 0)."""
    def pct(r):
        if r["undefined"] or pd.isna(r["recovered_pct"]):
            return "undefined (skyline = base)" if r["undefined"] else "—"
        ci = "" if pd.isna(r["ci_lo"]) else f" [{r['ci_lo']:.0f}, {r['ci_hi']:.0f}]"
        return f"{r['recovered_pct']:.0f}{ci}" + (" (interval of skyline − base contains 0)" if r["undefined_ci"]
                                                  else "")

    def gap(r):
        if pd.isna(r["gap"]):
            return "—"
        ci = "" if pd.isna(r["denom_lo"]) else f" [{r['denom_lo']:.2f}, {r['denom_hi']:.2f}]"
        return f"{r['gap']:.2f}{ci}"

    return pd.DataFrame({"Model size": df["size"], "Configuration": df["configuration"],
                         "Examples": df["train_examples"], "Benchmark": df["benchmark"],
                         "Recovered % [95 % interval]": df.apply(pct, axis=1),
                         "Skyline − base (points) [95 %]": df.apply(gap, axis=1),
                         "z of skyline − base": df["gap_z"].map(cell),
                         "Note": df.get("reason", pd.Series([""] * len(df))).map(lambda v: "" if pd.isna(v) else str(v))})


def markdown_html(text: str) -> str:
    """table1.md, paper_comparison.md, ... as HTML, rendered by Python-Markdown (pipe tables, lists,
    emphasis, code); their headings become this page's h3, and their text is escaped first (the
    disagreement examples quote model answers, which may hold anything)."""
    import markdown

    text = re.sub(r"^#{1,6} ", "### ", html.escape(text, quote=False), flags=re.M)
    return markdown.markdown(text, extensions=["tables"], output_format="html")


def figure(fig_dir: Path, name: str, title: str) -> str:
    png = fig_dir / f"{name}.png"
    if not png.exists():
        return f"<h3>{title}</h3><p>not produced yet: {html.escape(str(png))}</p>"
    data = base64.b64encode(png.read_bytes()).decode()
    return (f"<figure id='{name}'><h3>{title}</h3><img alt='{name}' src='data:image/png;base64,{data}'>"
            f"<figcaption>{caption(name)} (PDF: <code>{html.escape(str(png.with_suffix('.pdf')))}</code>)"
            "</figcaption></figure>")


def plan(cfg: dict) -> str:
    """The GPU-hours and memory tables (elicit/plan/cost.py, as estimate_cost.py prints them) for this
    config and its site settings."""
    from elicit.checks.config import load_site
    from elicit.plan import cost

    try:
        hours = pd.DataFrame(cost.estimate(cfg)).to_html(
            index=False, float_format=lambda v: f"{v:.1f}", border=0)
    except cost.CostError as e:  # a config without planning numbers (the CPU demo)
        hours = f"<p>GPU-hours not estimated: {html.escape(str(e))}</p>"
    mem = cost.memory_table(cfg, gpu_mem_gb=load_site(cfg).get("gpu_mem_gb"))
    return (f"<h2 id='plan'>Plan: GPU-hours and memory</h2>{caption('plan')}{hours}"
            f"<pre>{html.escape(mem)}</pre><p>CPU-only jobs (the demo's) have no GPU memory to plan ('-').</p>")


def provenance(results: Path, cfg: dict) -> str:
    """Data and hub revisions, task datasets, the versions recorded by the evaluations, the config."""
    items = []
    for path in [Path(grid.data_manifest(results)), *sorted((results / "hub").rglob("*.json"))]:
        if path.exists():
            d = read_json(path)
            keep = {k: d.get(k) for k in ("source", "revision", "resolved_revision", "repo", "commit", "n_rows",
                                         "datasets", "versions") if d.get(k) is not None}
            items.append(f"<h4>{html.escape(str(path))}</h4><pre>{html.escape(json.dumps(keep, indent=1))}</pre>")
    cells = [cell for *_, cell in grid.eval_cells(results)]
    if cells:
        d = read_json(cells[0])
        items.append(f"<h4>versions recorded by the evaluations (e.g. {html.escape(str(cells[0]))})</h4>"
                     f"<pre>{html.escape(json.dumps(d.get('versions'), indent=1))}</pre>")
    items.append(f"<h4>config</h4><pre>{html.escape(yaml.safe_dump(cfg, sort_keys=False))}</pre>")
    return "<h2 id='provenance'>Provenance</h2>" + "".join(items)


def banner(cfg: dict) -> str:
    """A warning at the top when the models are the demo's tiny random ones (models.<size>.demo)."""
    demo = [s for s, m in cfg["models"].items() if m.get("demo")]
    if not demo:
        return ""
    return ("<p style='background:#fff3cd;border:1px solid #e0c060;padding:.6em'><b>Demo run.</b> The models ("
            + html.escape(", ".join(demo)) + ") are tiny random-init stand-ins and the data a synthetic lookup task "
            "(config/demo.yaml): the numbers test the pipeline, they say nothing about the paper's claims.</p>")


def hidden(results: Path) -> str:
    """What a score hides: why the answers stopped, Table 1 under the second scorer, where they disagree."""
    parts = ["<h2 id='hidden'>What a score hides</h2>"]
    for name, cap in (("stop_reasons.md", "stop_reasons"), ("table1_robust.md", "table1_robust")):
        f = results / name
        parts.append(caption(cap) + (markdown_html(f.read_text()) if f.exists() else
                                                 f"<p>not produced yet: {html.escape(str(f))}</p>"))
    return "\n".join(parts)


def claim(results: Path) -> str:
    """The paper's claim as a statistic (claim.csv), its figure, and below it the slope fit, exploratory."""
    return "\n".join([
        "<h2 id='the_claim'>The paper's claim</h2>",
        table(results / "claim.csv", "Smallest subset with a positive gain, per size", "claim_table"),
        table(results / "claim_train_seeds.csv", "The same, training and evaluation noise combined (Table 1d)",
              "claim_train_seeds"),
        figure(results / "figures", "claim", figure_names.title("claim")),
        table(results / "scaling_fit.csv", "Scaling fit (exploratory, not the claim's test)", "scaling_fit")])


def build(results: Path, cfg: dict) -> str:
    md = (results / "table1.md").read_text() if (results / "table1.md").exists() else ""
    cmp = (results / "paper_comparison.md").read_text() if (results / "paper_comparison.md").exists() else ""
    seeds_md = (results / "table1_train_seeds.md").read_text() if (results / "table1_train_seeds.md").exists() else ""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Reasoning elicitation: results</title>"
             f"<style>{STYLE}</style></head><body><h1>Reasoning elicitation is scale dependent: results</h1>",
             "<p>Contents: <a href='#table1'>Table 1</a> · <a href='#recovered_table'>Recovered %</a> · "
             "<a href='#train_seeds'>training seeds</a> · "
             "<a href='#comparison'>comparison with the paper</a> · <a href='#the_claim'>the paper's claim</a> · "
             "<a href='#figures'>figures</a> · "
             "<a href='#hidden'>what a score hides</a> · "
             "<a href='#plan'>plan</a> · <a href='#provenance'>provenance</a></p>", banner(cfg),
             f"<h2 id='table1'>Table 1</h2>{caption('table1')}{markdown_html(md)}",
             table(results / "recovered.csv", "Recovered % (with LoRA vs full)", "recovered_table", recovered_display),
             f"<h2 id='train_seeds'>Training seeds</h2>{caption('table1_train_seeds')}{markdown_html(seeds_md)}",
             f"<h2 id='comparison'>Comparison with the paper</h2>{caption('paper_comparison_table')}"
            f"{markdown_html(cmp)}",
            claim(results), hidden(results),
            "<h2 id='figures'>Figures</h2>", *(figure(results / "figures", n, figure_names.title(n)) for n in figure_names.NAMES
              if n != "claim"),
             plan(cfg), provenance(results, cfg), "</body></html>"]
    return "\n".join(parts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True)
    ap.add_argument("--config-json", required=True, help="the workflow's config as JSON")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    from elicit.checks.config import check

    write_text(args.out, build(Path(args.results), check(json.loads(args.config_json))))  # defaults filled
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
