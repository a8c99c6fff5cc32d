"""Combined-defence tables (paper Table 4): which denoisers and classifiers each row needs, and the table.

A row of ``combined_tables.<name>.rows`` is (denoiser, lambda_n, lambda_a): the classifier is the one
Table 1 trains for those lambdas (same name, so the same file: nothing is trained twice), and the
denoiser is ``none``, the dataset's Reformer, or an HGD denoiser guided by that classifier. Labels follow
the paper: NA, R, R+Ln, R+La, R+Ln+La, HGD*, HGD*+Ln, ...
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline_src.config import ParamsError
from pipeline_src.io import write_text

if TYPE_CHECKING:  # pandas only inside the table functions: train-denoiser jobs import DenoiserConfig from here
    import pandas as pd

PREFIX = {"none": "", "reformer": "R", "hgd": "HGD*"}


@dataclass(frozen=True)
class DenoiserConfig:
    """One denoiser's training: the kind, its structure, its noise and its optimiser."""
    kind: str  # reformer | hgd
    seed: int
    epochs: int
    batch_size: int
    lr: float
    width: int
    depth: int
    noise: str  # gaussian: x + N(0, level^2); uniform: x + U[-level, level]; clipped to [0, 1]
    noise_level: float
    guide: str = "features"  # hgd: features = f(x), the final conv stage (FGD); logits (LGD)
    threads: int = 1

    @classmethod
    def from_params(cls, cfg: dict, kind: str, seed: int) -> "DenoiserConfig":
        d = cfg["denoisers"][kind]
        return cls(kind=kind, seed=seed, epochs=d["epochs"], batch_size=d["batch_size"], lr=float(d["lr"]),
                   width=d["width"], depth=d.get("depth", 1), noise=d["noise"],
                   noise_level=float(d["noise_level"]), guide=d.get("guide", "features"),
                   threads=cfg["training"]["threads"])


@dataclass(frozen=True)
class DenoiserJob:
    name: str
    kind: str  # reformer | hgd
    dataset: str
    seed: int
    protects: str | None = None  # hgd: the classifier (model name) whose features guide it


@dataclass(frozen=True)
class CombinedRow:
    label: str  # the paper's row label
    model: str  # the classifier's model name
    denoiser: str | None  # DenoiserJob name; None = the classifier alone


def reformer_name(dataset: str, seed: int) -> str:
    return f"{dataset}_reformer_s{seed}"


def hgd_name(model: str) -> str:
    return f"{model}_hgd"


def row_label(row: dict) -> str:
    """'NA' for the bare undefended classifier, else the paper's notation (R+Ln, HGD*+Ln+La, ...)."""
    if row.get("label"):
        return row["label"]
    parts = [PREFIX[row["denoiser"]]] + (["Ln"] if row["lambda_n"] > 0 else []) + (["La"] if row["lambda_a"] > 0 else [])
    return "+".join(p for p in parts if p) or "NA"


def denoiser_path(name: str) -> str:
    return f"models/denoisers/{name}.pt"


def denoised_eval_path(denoiser: str, model: str) -> str:
    return f"results/metrics/eval_denoised/{denoiser}/{model}.json"


def evaluation_jobs(combined: dict[str, list[CombinedRow]]) -> dict[str, list[tuple[str, str]]]:
    """Table -> the (denoiser, model) pairs its evaluation job computes: every pair once, in the first
    table that has it (one job per table: the start-up of a job costs more than evaluating a pair)."""
    seen: set[tuple[str, str]] = set()
    jobs: dict[str, list[tuple[str, str]]] = {}
    for table, rows in combined.items():
        pairs = [(r.denoiser, r.model) for r in rows if r.denoiser is not None]
        jobs[table] = [p for p in dict.fromkeys(pairs) if p not in seen]
        seen.update(jobs[table])
    return {t: pairs for t, pairs in jobs.items() if pairs}


def check_combined(cfg: dict, source: str) -> None:
    """Semantic checks the schema cannot express; ParamsError naming the key and the fix."""
    from pipeline_src.config import ARCHS

    for name, table in cfg.get("combined_tables", {}).items():
        where = f"combined_tables.{name}"
        if table["dataset"] not in cfg["datasets"]:
            raise ParamsError(f"{source}: '{where}.dataset' = {table['dataset']!r} is not a defined dataset; "
                              f"defined datasets: {', '.join(cfg['datasets'])}")
        if table["arch"] not in ARCHS:
            raise ParamsError(f"{source}: '{where}.arch' = {table['arch']!r}; allowed: {', '.join(ARCHS)}")
        size = cfg["datasets"][table["dataset"]]["image_size"]
        labels: dict[str, int] = {}
        for i, row in enumerate(table["rows"]):
            if row["denoiser"] != "none" and row["denoiser"] not in cfg.get("denoisers", {}):
                raise ParamsError(f"{source}: '{where}.rows[{i}]' uses denoiser {row['denoiser']!r}, which "
                                  f"'denoisers' does not define; add 'denoisers.{row['denoiser']}'")
            if row["denoiser"] == "hgd" and size % 2 ** cfg["denoisers"]["hgd"]["depth"]:
                raise ParamsError(f"{source}: 'denoisers.hgd.depth' = {cfg['denoisers']['hgd']['depth']} halves "
                                  f"{size} px images too often; image_size must be divisible by 2**depth")
            label = row_label(row)
            if label in labels:
                raise ParamsError(f"{source}: '{where}.rows[{i}]' has the label {label!r} of rows[{labels[label]}]; "
                                  "give one of them a different 'label'")
            labels[label] = i


def build_combined(cfg: dict, models: dict, datasets: list[str], model_job: type, model_name) -> tuple[dict, dict]:
    """Add to ``models`` / ``datasets`` what the combined tables need; return (denoisers, tables).

    A classifier only a combined row names is trained like any other; it gets a plain evaluation only
    when a row uses it without a denoiser (``ModelJob.evaluated``).
    """
    seed = cfg["seed"]
    denoisers: dict[str, DenoiserJob] = {}
    tables: dict[str, list[CombinedRow]] = {}
    for table_name, table in cfg.get("combined_tables", {}).items():
        ds, arch = table["dataset"], table["arch"]
        if ds not in datasets:
            datasets.append(ds)
        rows = []
        for row in table["rows"]:
            ln, la = float(row["lambda_n"]), float(row["lambda_a"])
            name = model_name(ds, arch, ln, la, seed)
            bare = row["denoiser"] == "none"
            if name not in models:
                models[name] = model_job(name, ds, arch, ln, la, seed, evaluated=bare)
            elif bare and not models[name].evaluated:
                models[name] = replace(models[name], evaluated=True)
            job = None
            if row["denoiser"] == "reformer":
                job = DenoiserJob(reformer_name(ds, seed), "reformer", ds, seed)
            elif row["denoiser"] == "hgd":
                job = DenoiserJob(hgd_name(name), "hgd", ds, seed, protects=name)
            if job is not None:
                denoisers[job.name] = job
            rows.append(CombinedRow(row_label(row), name, job.name if job else None))
        tables[table_name] = rows
    return denoisers, tables


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
