"""`stats` stage: is a difference noise? Confidence intervals and paired tests for any set of evaluations.

Input: evaluation JSONs (``evaluate.py``'s format: ``n_test``, ``correct``, ``correct_flags``, ``seed`` and
the fields that identify a row, by default ``lambda_n`` and ``lambda_a``) and the columns (clean, attacks).
Output: one long CSV line per (row, column):

- ``accuracy``: mean over seeds, in percent; ``std``: its standard deviation over seeds (blank for one seed);
- ``ci_low``/``ci_high``: 95% Wilson score interval over the test images (all seeds' predictions pooled);
- ``mcnemar_p``: exact McNemar test (two-sided binomial on the discordant pairs) of the row against the
  reference row (the NA model, lambda_n = lambda_a = 0) on the same images; ``better``/``worse`` count the
  images only this row / only the reference classified correctly, summed over seeds paired by seed.

Both statistics come from statsmodels (``proportion_confint(method="wilson")``, ``mcnemar(exact=True)``).
Our earlier hand-written versions agreed with it to 4e-14 (relative) on every k <= n < 200 and every
discordant split of n < 400, and gave byte-identical CSVs: no reason to keep our own. statsmodels takes
1-2 s to import, so it is imported inside the two functions, only by the jobs that compute statistics.
"""
from __future__ import annotations

import io
import json
import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from pipeline_src.config import fmt_number
from pipeline_src.io import write_text

ALPHA = 0.05  # two-sided: 95% intervals
ROW_FIELDS = ("lambda_n", "lambda_a")


# --------------------------------------------------------------------------- per-image flags

def decode_flags(hex_flags: str, n: int) -> list[bool]:
    """Inverse of ``evaluate.encode_flags``."""
    if len(hex_flags) != (n + 3) // 4:
        raise ValueError(f"per-image record of {len(hex_flags)} hex digits does not hold {n} images")
    bits = "".join(f"{int(d, 16):04b}" for d in hex_flags)
    return [b == "1" for b in bits[:n]]


# --------------------------------------------------------------------------- the two statistics

def wilson_interval(k: int, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (well behaved at 0 and 1, unlike the normal interval)."""
    if n <= 0:
        return (math.nan, math.nan)
    from statsmodels.stats.proportion import proportion_confint  # lazy: a slow import

    low, high = proportion_confint(k, n, alpha=alpha, method="wilson")
    return (max(0.0, float(low)), min(1.0, float(high)))


def mcnemar_exact(better: int, worse: int) -> float:
    """Two-sided exact McNemar p-value: under H0 each discordant pair goes either way with probability 1/2."""
    if better + worse == 0:
        return 1.0
    from statsmodels.stats.contingency_tables import mcnemar  # lazy: a slow import

    # only the off-diagonal (discordant) cells enter the exact test; the diagonal is irrelevant
    return min(1.0, float(mcnemar([[0, better], [worse, 0]], exact=True).pvalue))


# --------------------------------------------------------------------------- a table of evaluations

def _row_key(ev: dict, fields: Sequence[str]) -> tuple[str, ...]:
    if all(f in ev for f in fields):
        return tuple(fmt_number(ev[f]) if isinstance(ev[f], (int, float)) else str(ev[f]) for f in fields)
    return (str(ev.get("model", "?")),) * len(fields)


def _flags(ev: dict, column: str, path: str) -> list[bool]:
    record = ev.get("correct_flags", {}).get(column)
    if record is None:
        raise ValueError(f"{path} has no per-image record for {column!r} ('correct_flags'): re-run its evaluation")
    return decode_flags(record, ev["n_test"])


def is_reference(key: tuple[str, ...], fields: Sequence[str]) -> bool:
    """The NA row: every lambda zero."""
    return tuple(fields) == ROW_FIELDS and all(float(v) == 0 for v in key)


def build_stats(eval_paths: Sequence[str | Path], columns: Sequence[str], fields: Sequence[str] = ROW_FIELDS,
                reference: Callable[[tuple[str, ...]], bool] | None = None) -> pd.DataFrame:
    """Long table over rows (``fields`` of each JSON, several seeds of a row grouped) x columns."""
    reference = reference or (lambda key: is_reference(key, fields))
    groups: dict[tuple[str, ...], list[tuple[str, dict]]] = {}
    for path in eval_paths:
        ev = json.loads(Path(path).read_text())
        groups.setdefault(_row_key(ev, fields), []).append((str(path), ev))
    ref_key = next((k for k in groups if reference(k)), None)
    out = []
    for key, evs in groups.items():
        for col in columns:
            missing = [p for p, ev in evs if col not in ev.get("correct", {})]
            if missing:
                raise ValueError(f"{missing[0]} has no result for {col!r}: re-run its evaluation")
            accs = [100.0 * ev["correct"][col] / ev["n_test"] for _, ev in evs]
            k, n = sum(ev["correct"][col] for _, ev in evs), sum(ev["n_test"] for _, ev in evs)
            low, high = wilson_interval(k, n)
            line = {**dict(zip(fields, key)), "metric": col, "seeds": len(evs), "n_test": evs[0][1]["n_test"],
                    "accuracy": sum(accs) / len(accs), "std": statistics.stdev(accs) if len(accs) > 1 else math.nan,
                    "ci_low": 100.0 * low, "ci_high": 100.0 * high,
                    "reference": "", "better": math.nan, "worse": math.nan, "mcnemar_p": math.nan}
            if ref_key is not None and key != ref_key:
                better, worse = _discordant(evs, groups[ref_key], col)
                line.update(reference="/".join(ref_key), better=better, worse=worse,
                            mcnemar_p=mcnemar_exact(better, worse))
            out.append(line)
    return pd.DataFrame(out)


def _discordant(evs: list[tuple[str, dict]], refs: list[tuple[str, dict]], col: str) -> tuple[int, int]:
    """Images only the row / only the reference got right, pairing seeds (a single reference pairs with all)."""
    by_seed = {ev.get("seed"): (p, ev) for p, ev in refs}
    better = worse = 0
    for path, ev in evs:
        ref_path, ref = by_seed.get(ev.get("seed"), refs[0] if len(refs) == 1 else (None, None))
        if ref is None:
            raise ValueError(f"{path}: the reference row has no evaluation with seed {ev.get('seed')}")
        if ref["n_test"] != ev["n_test"]:
            raise ValueError(f"{path} and {ref_path} were evaluated on different test sets: re-run both")
        mine, theirs = _flags(ev, col, path), _flags(ref, col, ref_path)
        better += sum(a and not b for a, b in zip(mine, theirs))
        worse += sum(b and not a for a, b in zip(mine, theirs))
    return better, worse


def to_csv(df: pd.DataFrame) -> str:
    """Percentages with two decimals like the tables; p-values with four significant digits."""
    df = df.copy()
    for col in ("accuracy", "std", "ci_low", "ci_high"):
        df[col] = df[col].map(lambda v: "" if math.isnan(v) else f"{v:.2f}")
    for col in ("better", "worse"):
        df[col] = df[col].map(lambda v: "" if math.isnan(v) else str(int(v)))
    df["mcnemar_p"] = df["mcnemar_p"].map(lambda v: "" if math.isnan(v) else f"{v:.4g}")
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def write_stats(eval_paths: Sequence[str | Path], columns: Sequence[str], out_path: str | Path,
                fields: Sequence[str] = ROW_FIELDS) -> pd.DataFrame:
    stats = build_stats(eval_paths, columns, fields)
    write_text(out_path, to_csv(stats))
    return stats
