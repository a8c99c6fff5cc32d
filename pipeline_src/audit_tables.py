"""The audit's tables, figure and verdict (issue 16, docs/audit.md).

Per paper table, ``audit_<table>.csv``: one line per row (model) with its robust accuracy under each threat
model at each eps, a 95% Wilson interval for each, the strongest attack overall, and the sanity checks
(``sanity.py``) as ``check_<name>`` (pass / fail / note / n/a) plus ``check_<name>_detail`` (the numbers).

A threat model's accuracy is per-image worst case: an image counts as robust only if the model gets it right
clean and under every attack of that threat model at that eps (an attacker tries them all, and the clean image
is in every eps-ball). Threat models, in the order of the columns:

    transfer           the paper's attacks (FGSM, I-FGSM) crafted on the surrogate        (evaluation record)
    strong_transfer    MI-FGSM and DI-FGSM crafted on the surrogate                        (audit record)
    ensemble_transfer  attacks crafted on the ensemble surrogate                           (audit record)
    whitebox           FGSM, I-FGSM, PGD on the model itself                               (white-box record)
    square             Square Attack on the model (outputs only)                           (audit record)
    autoattack         AutoAttack on the model                                             (audit record)
    strongest          all of the above at that eps

Every accuracy is on the audit's image subset; the evaluation record (all test images) and the white-box
record (its own subset, a superset when ``whitebox.max_images`` >= ``audit.max_images``) are restricted to it.
"""
from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline_src.config import AuditConfig, fmt_number
from pipeline_src.sanity import (UNBOUNDED_COLUMN, Check, autoattack_vs_pgd, eps_monotone, gradient_masking,
                                 iterative_vs_single, unbounded_reaches_zero, whitebox_vs_transfer, worst_case)
from pipeline_src.stats import decode_flags, mcnemar_exact, wilson_interval

THREATS = ("transfer", "strong_transfer", "ensemble_transfer", "whitebox", "square", "autoattack")
TRANSFER_THREATS = ("transfer", "strong_transfer", "ensemble_transfer")
CHECKS = ("eps_monotone", "iterative_vs_single", "whitebox_vs_transfer", "autoattack_vs_pgd", "unbounded_reaches_zero",
          "gradient_masking", "transfer_eps_monotone")


@dataclass(frozen=True)
class ThreatColumn:
    """One attack column: which threat model it belongs to, its eps (0-255), where its flags are, its method."""
    column: str
    threat: str
    eps: float
    source: str  # "evaluation" | "whitebox" | "audit"
    method: str

    @property
    def key(self) -> str:
        """Its name in RowFlags.flags: the transfer sets and the white-box attacks share names (fgsm_eps8 is both,
        by design), so those two carry their threat model; the audit's own names are unique (the schema checks)."""
        return self.column if self.source == "audit" else f"{self.threat}:{self.column}"


def threat_columns(cfg: dict) -> list[ThreatColumn]:
    """Every eps-bounded attack column the audit tables read, from validated params (C&W has no eps: left out)."""
    audit = AuditConfig.from_params(cfg)
    cols = [ThreatColumn(n, "transfer", float(a["eps"]), "evaluation", a["method"])
            for n, a in cfg["attacks"].items() if a.get("eps") is not None]
    cols += [ThreatColumn(a.name, "strong_transfer" if a.surrogate == "surrogate" else "ensemble_transfer", a.eps,
                          "audit", a.method) for a in audit.transfer]
    if cfg.get("whitebox", {}).get("enabled"):
        cols += [ThreatColumn(n, "whitebox", float(a["eps"]), "whitebox", a["method"])
                 for n, a in cfg["whitebox"]["attacks"].items()]
    cols.append(ThreatColumn(audit.square_column, "square", audit.square_eps, "audit", "square"))
    cols += [ThreatColumn(c, "autoattack", e, "audit", "autoattack") for c, e in audit.autoattack_columns().items()]
    return cols


# --------------------------------------------------------------------------- one row's per-image flags


@dataclass
class RowFlags:
    """One model's per-image correctness on the audit's images, per column (ThreatColumn.key, and 'clean')."""
    lambda_n: str
    lambda_a: str
    n: int
    flags: dict[str, list[bool]] = field(default_factory=dict)

    @property
    def is_reference(self) -> bool:
        return float(self.lambda_n) == 0 and float(self.lambda_a) == 0

    def correct(self, column: str) -> int:
        return sum(self.flags[column])


def _restrict(record: dict, path: str, indices: list[int], columns: Sequence[str], what: str) -> dict[str, list[bool]]:
    own = record.get("test_indices", list(range(record["n_test"])))
    pos = {i: k for k, i in enumerate(own)}
    missing = [i for i in indices if i not in pos]
    if missing:
        raise ValueError(f"{path} ({what}) did not attack test image {missing[0]} that the audit uses: set "
                         "'whitebox.max_images' to 0 or to at least 'audit.max_images' (same seed = nested subsets)")
    out = {}
    for col in columns:
        if col not in record.get("correct_flags", {}):
            raise ValueError(f"{path} has no per-image record for {col!r}: re-run its {what} job")
        flags = decode_flags(record["correct_flags"][col], record["n_test"])
        out[col] = [flags[pos[i]] for i in indices]
    return out


def load_row(audit_paths: Sequence[str | Path], evaluation_path: str | Path | None, whitebox_path: str | Path | None,
             columns: Sequence[ThreatColumn]) -> RowFlags:
    """Merge a model's audit record(s) (one per part, same images), evaluation and white-box records."""
    if not audit_paths:
        raise ValueError("a row needs at least one audit record")
    records = [(str(p), json.loads(Path(p).read_text())) for p in audit_paths]
    first_path, first = records[0]
    indices = first["test_indices"]
    row = RowFlags(fmt_number(first["lambda_n"]), fmt_number(first["lambda_a"]), len(indices))
    for path, rec in records:
        if rec["test_indices"] != indices or (rec["lambda_n"], rec["lambda_a"]) != (first["lambda_n"], first["lambda_a"]):
            raise ValueError(f"{path} and {first_path} are not records of the same model on the same images")
        row.flags |= _restrict(rec, path, indices, list(rec["correct_flags"]), "audit")
    for source, path in (("evaluation", evaluation_path), ("whitebox", whitebox_path)):
        wanted = [c for c in columns if c.source == source]
        if not wanted or path is None:
            continue
        rec = json.loads(Path(path).read_text())
        if (rec["lambda_n"], rec["lambda_a"]) != (first["lambda_n"], first["lambda_a"]):
            raise ValueError(f"{path} is not a record of the model of {first_path}")
        flags = _restrict(rec, str(path), indices, [c.column for c in wanted], source)
        row.flags |= {c.key: flags[c.column] for c in wanted}
    return row


# --------------------------------------------------------------------------- the table


def _present(row: RowFlags, columns: Sequence[ThreatColumn]) -> list[ThreatColumn]:
    return [c for c in columns if c.key in row.flags]


def strongest_attack(row: RowFlags, columns: Sequence[ThreatColumn], eps: float) -> str:
    """The single attack at ``eps`` that leaves the row fewest correct images (ties: by name)."""
    return min((c for c in _present(row, columns) if c.eps == eps), key=lambda c: (row.correct(c.key), c.key)).key


def threat_flags(row: RowFlags, columns: Sequence[ThreatColumn]) -> dict[tuple[str, float], list[bool]]:
    """(threat, eps) -> per-image worst case over that threat model's columns and the clean image (it lies in
    every eps-ball: robust = right when clean and under every attack, as AutoAttack counts); plus
    ('strongest', eps)."""
    clean = [row.flags["clean"]] if "clean" in row.flags else []
    groups: dict[tuple[str, float], list[list[bool]]] = {}
    for c in _present(row, columns):
        groups.setdefault((c.threat, c.eps), list(clean)).append(row.flags[c.key])
        groups.setdefault(("strongest", c.eps), list(clean)).append(row.flags[c.key])
    order = {t: i for i, t in enumerate((*THREATS, "strongest"))}
    return {k: worst_case(v) for k, v in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))}


def row_checks(row: RowFlags, columns: Sequence[ThreatColumn], cfg: AuditConfig) -> dict[str, Check]:
    """The sanity checks of one row (see sanity.py), on the row's audit images."""
    present = _present(row, columns)
    n = row.n

    def by_method(threats: Sequence[str]) -> dict[str, dict[float, int]]:
        out: dict[str, dict[float, int]] = {}
        for c in present:
            if c.threat in threats:
                family = c.method if c.threat in ("whitebox", "autoattack") else f"{c.threat}:{c.method}"
                out.setdefault(family, {})[c.eps] = min(out.get(family, {}).get(c.eps, n), row.correct(c.key))
        return out

    whitebox = by_method(("whitebox", "autoattack"))
    threats = threat_flags(row, columns)
    wb_eps = {e: sum(f) for (t, e), f in threats.items() if t == "whitebox"}
    tr_eps: dict[float, list[list[bool]]] = {}
    for (t, e), f in threats.items():
        if t in TRANSFER_THREATS:
            tr_eps.setdefault(e, []).append(f)
    gradient = [row.flags[c.key] for c in present if c.threat == "whitebox" and c.eps == cfg.square_eps]
    return {
        "eps_monotone": eps_monotone(whitebox, n, tolerance_images=cfg.eps_tolerance_images),
        "iterative_vs_single": iterative_vs_single(
            whitebox.get("fgsm", {}), {m: v for m, v in whitebox.items() if m in ("ifgsm", "pgd")}, n),
        "whitebox_vs_transfer": whitebox_vs_transfer(wb_eps, {e: sum(worst_case(f)) for e, f in tr_eps.items()}, n),
        "autoattack_vs_pgd": autoattack_vs_pgd(whitebox.get("autoattack", {}), whitebox.get("pgd", {}), n),
        "unbounded_reaches_zero": unbounded_reaches_zero(
            row.correct(UNBOUNDED_COLUMN) if UNBOUNDED_COLUMN in row.flags else None, n),
        "gradient_masking": gradient_masking(
            row.correct(cfg.square_column) if cfg.square_column in row.flags else None,
            sum(worst_case(gradient)) if gradient else None, n, threshold=cfg.masking_threshold),
        "transfer_eps_monotone": eps_monotone(by_method(TRANSFER_THREATS), n,
                                              tolerance_images=cfg.eps_tolerance_images, enforce=False,
                                              name="transfer_eps_monotone"),
    }


def _acc(k: int, n: int) -> tuple[float, float, float]:
    low, high = wilson_interval(k, n)
    return 100.0 * k / n if n else math.nan, 100.0 * low, 100.0 * high


def build_audit_table(rows: Sequence[RowFlags], columns: Sequence[ThreatColumn], cfg: AuditConfig) -> pd.DataFrame:
    """One line per row: n_images, clean and each (threat, eps) with Wilson CI, the strongest single attack per
    eps, and the sanity checks."""
    out = []
    for row in rows:
        line: dict = {"lambda_n": row.lambda_n, "lambda_a": row.lambda_a, "n_images": row.n}
        acc, low, high = _acc(row.correct("clean"), row.n)
        line |= {"clean": acc, "clean_ci_low": low, "clean_ci_high": high}
        for (threat, eps), flags in threat_flags(row, columns).items():
            name = f"{threat}_eps{fmt_number(eps)}"
            acc, low, high = _acc(sum(flags), row.n)
            line |= {name: acc, f"{name}_ci_low": low, f"{name}_ci_high": high}
            if threat == "strongest":
                line[f"{name}_attack"] = strongest_attack(row, columns, eps)
        if UNBOUNDED_COLUMN in row.flags:
            line[UNBOUNDED_COLUMN] = _acc(row.correct(UNBOUNDED_COLUMN), row.n)[0]
        for name, check in row_checks(row, columns, cfg).items():
            line |= {f"check_{name}": check.status, f"check_{name}_detail": check.detail}
        out.append(line)
    return pd.DataFrame(out)


def to_csv(df: pd.DataFrame) -> str:
    """Percentages with two decimals, p-values (columns ending in _p) with four significant digits."""
    df = df.copy()
    for col in [c for c in df.columns if c.endswith("_p")]:
        df[col] = df[col].map(lambda v: "" if isinstance(v, float) and math.isnan(v) else f"{v:.4g}")
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.2f", lineterminator="\n")
    return buf.getvalue()


# --------------------------------------------------------------------------- does the defence keep its advantage?


def advantage_summary(table: str, rows: Sequence[RowFlags], columns: Sequence[ThreatColumn],
                      cfg: AuditConfig) -> pd.DataFrame:
    """Per defended row: its advantage over the NA row (same images) under the paper's transfer attacks and under
    the strongest attack, both at the largest eps the two share, with McNemar's exact test on the paired flags.

    verdict: 'keeps' (ahead under the strongest attack, p < significance), 'ahead, not significant',
    'loses' (ahead under the paper's attacks, not under the strongest), 'no advantage' (not ahead under either).
    """
    refs = [r for r in rows if r.is_reference]
    if len(refs) != 1:
        raise ValueError(f"{table}: the advantage summary needs exactly one NA row (lambda_n = lambda_a = 0), "
                         f"found {len(refs)}")
    na = refs[0]
    na_threats = threat_flags(na, columns)
    out = []
    for row in rows:
        if row is na:
            continue
        if row.n != na.n:
            raise ValueError(f"{table}: row ln={row.lambda_n}, la={row.lambda_a} and NA were audited on different "
                             "images: re-run both with the same audit.max_images")
        threats = threat_flags(row, columns)
        shared = [e for (t, e) in threats if t == "strongest" and ("strongest", e) in na_threats]
        if not shared:
            continue
        eps = max(shared)
        line = {"table": table, "lambda_n": row.lambda_n, "lambda_a": row.lambda_a, "eps": fmt_number(eps),
                "n_images": row.n}
        for label, threat in (("paper", "transfer"), ("strongest", "strongest")):
            mine, theirs = threats.get((threat, eps)), na_threats.get((threat, eps))
            if mine is None or theirs is None:
                line |= {f"{label}_row": math.nan, f"{label}_na": math.nan, f"{label}_diff": math.nan,
                         f"{label}_p": math.nan}
                continue
            better = sum(a and not b for a, b in zip(mine, theirs))
            worse = sum(b and not a for a, b in zip(mine, theirs))
            line |= {f"{label}_row": 100.0 * sum(mine) / row.n, f"{label}_na": 100.0 * sum(theirs) / row.n,
                     f"{label}_diff": 100.0 * (sum(mine) - sum(theirs)) / row.n,
                     f"{label}_p": mcnemar_exact(better, worse)}
        line["strongest_attack"] = strongest_attack(row, columns, eps)
        line["verdict"] = verdict(line["paper_diff"], line["strongest_diff"], line["strongest_p"], cfg.significance)
        out.append(line)
    return pd.DataFrame(out)


def verdict(paper_diff: float, strongest_diff: float, strongest_p: float, significance: float = 0.05) -> str:
    if strongest_diff > 0 and strongest_p < significance:
        return "keeps"
    if strongest_diff > 0:
        return "ahead, not significant"
    if paper_diff > 0:
        return "loses"
    return "no advantage"


def summary_sentences(summary: pd.DataFrame) -> str:
    """Plain-words lines for README's "Is the defence real?": per table, which rows keep their advantage."""
    lines = []
    for table, part in summary.groupby("table", sort=False):
        eps = part["eps"].iloc[0]
        groups = {v: [f"ln={fmt_number(r.lambda_n)}, la={fmt_number(r.lambda_a)} "
                      f"({r.strongest_row:.1f}% vs NA {r.strongest_na:.1f}%, p={r.strongest_p:.2g})"
                      for r in part.itertuples() if r.verdict == v]
                  for v in ("keeps", "ahead, not significant", "loses", "no advantage")}
        text = f"- {table} (eps {eps}, {int(part['n_images'].iloc[0])} images, strongest attack per row): "
        text += "; ".join(f"{v}: {', '.join(rows)}" for v, rows in groups.items() if rows) + "."
        lines.append(text)
    return "\n".join(lines) + ("\n" if lines else "")


# --------------------------------------------------------------------------- figure


def plot_audit(table_df: pd.DataFrame, title: str):
    """Robust accuracy by threat model (bars, 95% Wilson intervals) per row, one panel per eps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pipeline_src.figures import row_label

    eps_values = sorted({float(c.split("_eps")[1]) for c in table_df.columns
                         if c.startswith("strongest_eps") and not c.endswith(("_ci_low", "_ci_high", "_attack"))})
    kinds = ("clean", *THREATS, "strongest")
    colours = {k: f"C{i}" for i, k in enumerate(kinds)}  # the same colour for a threat model in every panel
    fig, axes = plt.subplots(1, max(1, len(eps_values)), figsize=(6 * max(1, len(eps_values)), 4.6), squeeze=False)
    labels = [row_label(r.lambda_n, r.lambda_a) for r in table_df.itertuples()]
    handles = {}
    for ax, eps in zip(axes[0], eps_values):
        names = [(k, k if k == "clean" else f"{k}_eps{fmt_number(eps)}") for k in kinds]
        names = [(k, n) for k, n in names if n in table_df.columns]
        width = 0.8 / len(names)
        for j, (kind, name) in enumerate(names):
            acc = table_df[name].to_numpy(dtype=float)
            err = [acc - table_df[f"{name}_ci_low"].to_numpy(dtype=float),
                   table_df[f"{name}_ci_high"].to_numpy(dtype=float) - acc]
            xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(labels))]
            handles[kind] = ax.bar(xs, acc, width, yerr=err, capsize=2, color=colours[kind], label=kind,
                                   error_kw={"elinewidth": 0.8, "ecolor": "0.3"})
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%), 95% Wilson interval")
        ax.set_title(f"eps {fmt_number(eps)}/255")
    order = [k for k in kinds if k in handles]
    fig.legend([handles[k] for k in order], order, loc="lower center", ncol=len(order), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def write_audit_table(table: str, row_inputs: Sequence[Mapping], cfg: dict, out_csv: str | Path,
                      out_png: str | Path | None = None, out_summary: str | Path | None = None) -> pd.DataFrame:
    """The table's stage: ``row_inputs`` = one {'audit': [paths], 'evaluation': path, 'whitebox': path | None}
    per row, in the table's row order; writes the CSV, optionally the figure and the advantage summary CSV."""
    from pipeline_src.io import write_text

    audit_cfg = AuditConfig.from_params(cfg)
    columns = threat_columns(cfg)
    rows = [load_row(r["audit"], r.get("evaluation"), r.get("whitebox"), columns) for r in row_inputs]
    df = build_audit_table(rows, columns, audit_cfg)
    write_text(out_csv, to_csv(df))
    if out_summary is not None:
        write_text(out_summary, to_csv(advantage_summary(table, rows, columns, audit_cfg)))
    if out_png is not None:
        from pipeline_src.figures import save

        save(plot_audit(df, f"{table}: robust accuracy by threat model"), out_png)
    return df
