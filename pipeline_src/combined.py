"""Combined-defence tables (paper Table 4): the table of a combined_tables entry, and ours vs the paper."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline_src.io import write_text

if TYPE_CHECKING:  # pandas only inside the table functions: train-denoiser jobs import DenoiserConfig from here
    import pandas as pd

# --------------------------------------------------------------------------- the table

def build_combined_table(eval_paths: list[str | Path], labels: list[str], columns: list[str]) -> pd.DataFrame:
    """One row per evaluation (given order): defense, then accuracies in percent."""
    import pandas as pd

    if len(eval_paths) != len(labels):
        raise ValueError(f"{len(eval_paths)} evaluations for {len(labels)} row labels: give one label per evaluation")
    rows = []
    for path, label in zip(eval_paths, labels):
        ev = json.loads(Path(path).read_text())
        missing = [c for c in columns if c not in ev["accuracy"]]
        if missing:
            raise ValueError(f"{path} has no accuracy for {', '.join(missing)}: re-run its evaluation")
        rows.append({"defense": label, **{c: 100.0 * ev["accuracy"][c] for c in columns}})
    return pd.DataFrame(rows, columns=["defense", *columns])


def compare_combined_with_paper(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Long table: defense, metric, ours, paper, diff (ours - paper); paper blank where it is."""
    metrics = [c for c in ours.columns if c != "defense"]
    long_ours = ours.melt(id_vars=["defense"], value_vars=metrics, var_name="metric", value_name="ours")
    shared = [m for m in metrics if m in paper.columns]
    long_paper = paper.melt(id_vars=["defense"], value_vars=shared, var_name="metric", value_name="paper")
    out = long_ours.merge(long_paper, on=["defense", "metric"], how="left")  # keeps ours' order
    out["diff"] = out["ours"] - out["paper"]
    order = {m: i for i, m in enumerate(metrics)}
    row_order = {d: i for i, d in enumerate(ours["defense"])}
    out = out.assign(_r=out["defense"].map(row_order), _m=out["metric"].map(order))
    return out.sort_values(["_r", "_m"]).drop(columns=["_r", "_m"]).reset_index(drop=True)


def read_combined_csv(path: str | Path) -> pd.DataFrame:
    """A Table 4 CSV; the row label 'NA' stays a string (pandas reads it as missing by default)."""
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def write_combined_tables(eval_paths: list[str | Path], labels: list[str], columns: list[str], out_path: str | Path,
                          paper_path: str | Path | None, vs_paper_path: str | Path | None) -> pd.DataFrame:
    import pandas as pd

    from pipeline_src.tables import to_csv

    table = build_combined_table(eval_paths, labels, columns)
    write_text(out_path, to_csv(table))
    if vs_paper_path is not None:
        paper = read_combined_csv(paper_path) if paper_path else pd.DataFrame(columns=["defense"])
        write_text(vs_paper_path, to_csv(compare_combined_with_paper(table, paper)))
    return table
