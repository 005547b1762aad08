"""What a score hides, per saved answer: why it stopped, and what a second scorer reads in it.

  sample_row(s)          the per-answer columns aggregate.py keeps in samples.parquet: the
                         upstream score, n_new_tokens, stop_reason, the second scorer's score and
                         answer (elicit/eval/robust.py), upstream's filtered answer, the answer's tail
  robust_tidy(samples)   per-seed scores under the second scorer, shaped like tidy.parquet, so
                         Table 1's own statistics run on it (results/table1_robust.*)
  stop_table(...)        per (size, configuration, benchmark): answers by stop reason, new tokens,
                         answers whose final answer the stop-string cut removed, the robust score
                         of the uncut texts
  agreement(samples)     per cell (size, configuration, task): where the two scorers disagree
  examples(samples, k)   a few disagreements, for the report
"""
from __future__ import annotations

import pandas as pd

from elicit.eval import robust
from elicit.eval.stops import kind

CELL = ["size", "configuration", "train_examples"]
COLUMNS = ["score", "score_robust", "answer_robust", "score_robust_uncut", "cut_lost_answer", "filtered",
           "n_new_tokens", "stop_reason", "target", "tail"]
TAIL = 160  # characters of the answer's end kept for the examples


def sample_row(s: dict) -> dict:
    score, answer = robust.score(s.get("response"), s.get("target"))
    uncut = s.get("uncut")
    u_score, u_answer = robust.score(uncut, s.get("target")) if uncut else (score, answer)
    filtered = s.get("filtered")
    return {"score": float(s.get("score") or 0.0), "score_robust": float(score), "answer_robust": answer,
            "score_robust_uncut": float(u_score), "cut_lost_answer": answer is None and u_answer is not None,
            "filtered": None if filtered is None else str(filtered), "n_new_tokens": s.get("n_new_tokens"),
            "stop_reason": s.get("stop_reason"), "target": str(s.get("target")),
            "tail": (s.get("response") or "")[-TAIL:]}


def robust_tidy(samples: pd.DataFrame) -> pd.DataFrame:
    """A row per (cell, task, seed): score = 100 × mean second-scorer score, n_samples."""
    g = samples.groupby(CELL + ["task", "seed"], dropna=False)["score_robust"]
    out = g.agg(score="mean", n_samples="count").reset_index()
    out["score"] *= 100.0
    return out


def _benchmark(samples: pd.DataFrame, benchmarks: dict[str, list[str]]) -> pd.Series:
    of = {t: b for b, ts in benchmarks.items() for t in ts}
    return samples["task"].map(of)


STOP_COLUMNS = {"eos": "eos", "stop": "stop", "truncated": "max_gen_toks", "unrecorded": "unrecorded"}  # column: reason


def stop_table(samples: pd.DataFrame, benchmarks: dict[str, list[str]]) -> pd.DataFrame:
    """Answers per stop reason (counts and % of answers), mean/max new tokens, the stop strings hit. Column
    per reason: eos, stop, truncated (the answers that ran into max_gen_toks), unrecorded."""
    cols = CELL + ["benchmark", "answers", "eos", "stop", "truncated", "unrecorded", "truncated_pct",
                   "mean_new_tokens", "max_new_tokens", "stop_strings", "cut_lost_answer", "robust_uncut_pct"]
    if samples.empty:
        return pd.DataFrame(columns=cols)
    s = samples.assign(benchmark=_benchmark(samples, benchmarks),
                       reason=samples["stop_reason"].map(kind).fillna("unrecorded"))
    rows = []
    for key, g in s.dropna(subset=["benchmark"]).groupby(CELL + ["benchmark"], dropna=False):
        counts = g["reason"].value_counts()
        strings = sorted({r.split(":", 1)[1] for r in g["stop_reason"].dropna() if r.startswith("stop:")})
        tokens = pd.to_numeric(g["n_new_tokens"], errors="coerce")
        rows.append({**dict(zip(CELL + ["benchmark"], key)), "answers": len(g),
                     **{col: int(counts.get(r, 0)) for col, r in STOP_COLUMNS.items()},
                     "truncated_pct": 100.0 * counts.get("max_gen_toks", 0) / len(g),
                     "mean_new_tokens": tokens.mean(), "max_new_tokens": tokens.max(),
                     "stop_strings": " ".join(strings),
                     "cut_lost_answer": int(g["cut_lost_answer"].fillna(False).astype(bool).sum())
                     if "cut_lost_answer" in g else 0,
                     "robust_uncut_pct": 100.0 * g["score_robust_uncut"].mean() if "score_robust_uncut" in g
                     else float("nan")})
    return pd.DataFrame(rows, columns=cols)


def agreement(samples: pd.DataFrame) -> pd.DataFrame:
    """Per (size, configuration, task): answers, correct under each scorer, and the disagreements."""
    cols = CELL + ["task", "answers", "upstream_correct", "robust_correct", "only_upstream", "only_robust",
                   "disagree", "disagree_pct"]
    if samples.empty:
        return pd.DataFrame(columns=cols)
    s = samples.assign(u=samples["score"] > 0, r=samples["score_robust"] > 0)
    out = s.groupby(CELL + ["task"], dropna=False).apply(lambda g: pd.Series({
        "answers": len(g), "upstream_correct": int(g["u"].sum()), "robust_correct": int(g["r"].sum()),
        "only_upstream": int((g["u"] & ~g["r"]).sum()), "only_robust": int((~g["u"] & g["r"]).sum())}),
        include_groups=False).reset_index()
    out["disagree"] = out["only_upstream"] + out["only_robust"]
    out["disagree_pct"] = 100.0 * out["disagree"] / out["answers"]
    return out[cols]


def examples(samples: pd.DataFrame, k: int = 6) -> list[str]:
    """Markdown lines: up to k answers the scorers disagree on (upstream's and the second's reading)."""
    d = samples[(samples["score"] > 0) != (samples["score_robust"] > 0)] if not samples.empty else samples
    lines = []
    for _, r in d.head(k).iterrows():
        tail = str(r["tail"]).replace("\n", " ").replace("|", "\\|")
        lines.append(f"- {r['size']} {r['configuration']} {r['task']} seed {r['seed']} doc {r['doc_id']}: target "
                     f"`{r['target']}`, upstream read `{r['filtered']}` ({int(r['score'])}), second scorer "
                     f"`{r['answer_robust']}` ({int(r['score_robust'])}); answer ends: “…{tail[-100:]}”")
    return lines
