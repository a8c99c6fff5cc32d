"""The headline of a finished run, in plain words: per paper table, the NA row against the best defended row on
mean adversarial accuracy (the mean over the transferred attacks), each with a 95% interval.

The interval is a percentile bootstrap over test images (2,000 resamples, seed 0: the same run prints the same
numbers): an image's score is the fraction of attacks it survives, so the attacks' correlation on one image is
kept, which a Wilson interval on pooled counts would ignore. Printed by the Snakefile's ``onsuccess`` and by
``python -m pipeline_src summary``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

# A message, not a result: editing it re-runs no job (pipeline_src/codedeps.py).
AFFECTS_OUTPUTS = False

RESAMPLES = 2000


def _flags(hex_flags: str, n: int) -> list[bool]:
    bits = "".join(f"{int(c, 16):04b}" for c in hex_flags)
    return [b == "1" for b in bits[:n]]


def image_scores(evaluation: dict, attacks: list[str]) -> list[float]:
    """Per test image: the fraction of ``attacks`` it is still classified correctly under."""
    n = evaluation["n_test"]
    flags = [_flags(evaluation["correct_flags"][a], n) for a in attacks]
    return [sum(f[i] for f in flags) / len(attacks) for i in range(n)]


def bootstrap_interval(scores: list[float], resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean, in percent."""
    if not scores:
        return float("nan"), float("nan")
    rng = random.Random(seed)
    n = len(scores)
    means = sorted(sum(scores[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return 100.0 * means[int(0.025 * resamples)], 100.0 * means[int(0.975 * resamples) - 1]


def row_label(lambda_n: float, lambda_a: float) -> str:
    from pipeline_src.config import fmt_number

    return "NA" if lambda_n == 0 and lambda_a == 0 else f"ln={fmt_number(lambda_n)}, la={fmt_number(lambda_a)}"


def headline_lines(plan, root: Path = Path(".")) -> list[str]:
    """One line per paper table whose evaluations exist under ``root``; nothing for a table not built yet."""
    lines = []
    attacks = list(plan.attacks)
    for table, jobs in plan.tables.items():
        rows: dict[tuple[float, float], list[dict]] = {}
        try:
            for job in jobs:
                path = root / "results" / "metrics" / "eval" / f"{job.name}.json"
                rows.setdefault((job.lambda_n, job.lambda_a), []).append(json.loads(path.read_text()))
        except FileNotFoundError:
            continue
        means = {}
        for key, evals in rows.items():
            scores = [s for ev in evals for s in image_scores(ev, attacks)]
            means[key] = (100.0 * sum(scores) / len(scores), *bootstrap_interval(scores), evals[0]["n_test"])
        if (0.0, 0.0) not in means or len(means) < 2:
            continue
        na = means[(0.0, 0.0)]
        best_key = max((k for k in means if k != (0.0, 0.0)), key=lambda k: (means[k][0], k))
        best = means[best_key]
        verdict = ("above NA, the intervals apart" if best[1] > na[2] else
                   "below NA, the intervals apart" if best[2] < na[1] else "the intervals overlap NA's")
        lines.append(f"{table}: NA {na[0]:.1f}% [{na[1]:.1f}, {na[2]:.1f}], best defended row "
                     f"({row_label(*best_key)}) {best[0]:.1f}% [{best[1]:.1f}, {best[2]:.1f}]: {verdict} "
                     f"(mean accuracy over {len(attacks)} transferred attacks, {na[3]} test images)")
    return lines


def headline(plan, root: Path = Path(".")) -> str:
    lines = headline_lines(plan, root)
    if not lines:
        return ""
    where, report = root / "results" / "tables", root / "results" / "report.html"
    report_note = f"report: {report}" if report.is_file() else f"report: {report} after `make report`"
    return "\n".join(["", "Headline (NA against the best defended row; 95% bootstrap intervals)", *lines,
                      f"Full tables: {where}/ (as in the paper, vs the paper, statistics); {report_note}"]) + "\n"
