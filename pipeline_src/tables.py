"""`tables` stage: join per-model evaluation JSONs into the paper's tables, and compare with the paper.

Each table has exactly the paper's columns (lambda_n, lambda_a, clean, <attack columns>), accuracy in
percent with two decimals, rows in the order of params.yaml. The companion ``*_vs_paper.csv`` is long:
one line per (row, metric) with ours, the paper's and the difference.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from pipeline_src.config import fmt_number
from pipeline_src.io import write_text


def build_table(eval_paths: list[str | Path], columns: list[str]) -> pd.DataFrame:
    """One row per (lambda_n, lambda_a), in order of first appearance, with accuracies in percent; the
    evaluations of several seeds of a row are averaged (their spread is in stats.py's CSV)."""
    rows: dict[tuple[str, str], list[dict]] = {}
    for path in eval_paths:
        with open(path) as fh:
            ev = json.load(fh)
        missing = [c for c in columns if c not in ev["accuracy"]]
        if missing:
            raise ValueError(f"{path} has no accuracy for {', '.join(missing)}: re-run its evaluation")
        key = (fmt_number(ev["lambda_n"]), fmt_number(ev["lambda_a"]))
        rows.setdefault(key, []).append({c: 100.0 * ev["accuracy"][c] for c in columns})
    out = [{"lambda_n": ln, "lambda_a": la, **{c: sum(s[c] for s in seeds) / len(seeds) for c in columns}}
           for (ln, la), seeds in rows.items()]
    return pd.DataFrame(out, columns=["lambda_n", "lambda_a", *columns])


def compare_with_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Long table: lambda_n, lambda_a, metric, ours, paper, diff (ours - paper); paper blank where it is."""
    paper = paper.copy()
    paper["lambda_n"] = paper["lambda_n"].map(fmt_number)
    paper["lambda_a"] = paper["lambda_a"].map(fmt_number)
    metrics = [c for c in ours.columns if c not in ("lambda_n", "lambda_a")]
    long_ours = ours.melt(id_vars=["lambda_n", "lambda_a"], value_vars=metrics, var_name="metric", value_name="ours")
    shared = [m for m in metrics if m in paper.columns]
    long_paper = paper.melt(id_vars=["lambda_n", "lambda_a"], value_vars=shared, var_name="metric", value_name="paper")
    out = long_ours.merge(long_paper, on=["lambda_n", "lambda_a", "metric"], how="left")
    out["diff"] = out["ours"] - out["paper"]
    order = {m: i for i, m in enumerate(metrics)}
    row_order = {k: i for i, k in enumerate(zip(ours["lambda_n"], ours["lambda_a"]))}
    out = out.assign(_r=[row_order[k] for k in zip(out["lambda_n"], out["lambda_a"])],
                     _m=out["metric"].map(order)).sort_values(["_r", "_m"]).drop(columns=["_r", "_m"])
    return out.reset_index(drop=True)


def to_csv(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.2f", lineterminator="\n")
    return buf.getvalue()


def write_tables(eval_paths: list[str | Path], columns: list[str], out_path: str | Path,
                 paper_path: str | Path | None, vs_paper_path: str | Path | None) -> pd.DataFrame:
    table = build_table(eval_paths, columns)
    write_text(out_path, to_csv(table))
    if vs_paper_path is not None:
        # Without a published table (a row or table the paper lacks) the paper column stays empty.
        paper = pd.read_csv(paper_path) if paper_path else pd.DataFrame(columns=["lambda_n", "lambda_a"])
        write_text(vs_paper_path, to_csv(compare_with_paper(table, paper)))
    return table
