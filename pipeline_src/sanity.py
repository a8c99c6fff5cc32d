"""Sanity checks of an adversarial evaluation (Carlini et al. 2019, "On Evaluating Adversarial Robustness", sec. 5).

Each check is a pure function of correct-image counts on ONE set of images (``n`` of them) and returns a
:class:`Check`: its status and the numbers behind it. A failed check does not say the defence works or fails;
it says the evaluation cannot be trusted as it is (an attack that is too weak, or a model that hides its gradient).

* ``eps_monotone``: a bigger budget never helps the model: accuracy under the same attack does not rise with eps
  by more than ``tolerance_images`` images (white-box: enforced; transferred: reported only, because a transfer
  set crafted at a larger eps is a different set of images and may transfer worse by chance);
* ``iterative_vs_single``: I-FGSM / PGD are at least as strong as FGSM at the same eps;
* ``whitebox_vs_transfer``: attacking the model itself is at least as strong as transferring from another model;
* ``autoattack_vs_pgd``: AutoAttack (APGD-CE first, then three more) is at least as strong as PGD-20;
* ``unbounded_reaches_zero``: with the whole image box as budget every image can be changed into any other one,
  so a working attack reaches 0% accuracy;
* ``gradient_masking``: Square Attack uses only the model's outputs; if it beats the best gradient attack at the
  same eps by more than ``threshold`` points, the gradients were misleading the gradient attacks.

Statuses: ``pass``; ``fail``; ``note`` (a report-only check whose condition does not hold); ``n/a`` (inputs missing).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline_src.config import fmt_number

__all__ = ["UNBOUNDED_COLUMN", "Check", "at_least_as_strong", "autoattack_vs_pgd", "eps_monotone",
           "gradient_masking", "iterative_vs_single", "unbounded_reaches_zero", "whitebox_vs_transfer", "worst_case"]

PASS, FAIL, NOTE, NA = "pass", "fail", "note", "n/a"
# The unbounded attack's column (audit.py writes it, audit_tables.py reads it for unbounded_reaches_zero): named
# here, in a module without torch, so that the audit's tables and `make audit`'s summary do not import torch.
UNBOUNDED_COLUMN = "pgd_unbounded"


@dataclass(frozen=True)
class Check:
    """Outcome of one check: ``status`` (pass / fail / note / n/a), ``detail`` (the numbers, for a CSV cell)
    and ``values`` (the same numbers, machine-readable)."""
    name: str
    status: str
    detail: str
    values: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def worst_case(flags: Iterable[Sequence[bool]]) -> list[bool]:
    """Per image: correct under every attack (the accuracy of an attacker who tries them all)."""
    flags = [list(f) for f in flags]
    if not flags:
        raise ValueError("worst_case needs at least one list of per-image flags")
    if len({len(f) for f in flags}) != 1:
        raise ValueError(f"per-image flags of different lengths {sorted({len(f) for f in flags})}: not the same images")
    return [all(col) for col in zip(*flags)]


def _pct(correct: int, n: int) -> str:
    return f"{100.0 * correct / n:.1f}%" if n else "-"


def _eps(e: float) -> str:
    return fmt_number(e)


def eps_monotone(correct: Mapping[str, Mapping[float, int]], n: int, *, tolerance_images: int = 1,
                 enforce: bool = True, name: str = "eps_monotone") -> Check:
    """Correct counts ``{attack family: {eps: correct}}``: for every family and every eps_i < eps_j,
    correct(eps_j) <= correct(eps_i) + tolerance_images. Not enforced: a violation is a ``note``."""
    rises, compared = [], []
    for family, by_eps in correct.items():
        eps = sorted(by_eps)
        if len(eps) < 2:
            continue
        compared.append(f"{family} " + " -> ".join(f"{_pct(by_eps[e], n)}@{_eps(e)}" for e in eps))
        for i, lo in enumerate(eps):
            for hi in eps[i + 1:]:
                if by_eps[hi] > by_eps[lo] + tolerance_images:
                    rises.append(f"{family}: {by_eps[lo]}/{n} at eps {_eps(lo)} -> {by_eps[hi]}/{n} at eps {_eps(hi)} "
                                 f"(+{by_eps[hi] - by_eps[lo]} images)")
    values = {"tolerance_images": tolerance_images, "rises": len(rises)}
    if not compared:
        return Check(name, NA, "no attack at two eps", values)
    if rises:
        return Check(name, FAIL if enforce else NOTE, "; ".join(rises), values)
    return Check(name, PASS, "; ".join(compared), values)


def iterative_vs_single(single: Mapping[float, int], iterative: Mapping[str, Mapping[float, int]], n: int, *,
                        tolerance_images: int = 0, name: str = "iterative_vs_single") -> Check:
    """Single-step correct counts ``{eps: correct}`` against ``{iterative attack: {eps: correct}}``: every
    iterative attack leaves at most ``tolerance_images`` more images correct than the single step at that eps."""
    weaker, compared = [], []
    for attack, by_eps in iterative.items():
        for e, c in sorted(by_eps.items()):
            if e not in single:
                continue
            compared.append(f"{attack} {_pct(c, n)} <= fgsm {_pct(single[e], n)} @{_eps(e)}")
            if c > single[e] + tolerance_images:
                weaker.append(f"{attack} {c}/{n} > fgsm {single[e]}/{n} at eps {_eps(e)}")
    values = {"tolerance_images": tolerance_images, "weaker": len(weaker)}
    if not compared:
        return Check(name, NA, "no single-step and iterative attack at the same eps", values)
    return Check(name, FAIL if weaker else PASS, "; ".join(weaker or compared), values)


def at_least_as_strong(strong: Mapping[float, int], weak: Mapping[float, int], n: int, *,
                       labels: tuple[str, str], tolerance_images: int = 0, name: str) -> Check:
    """Correct counts per eps ``{eps: correct}`` of the attack that should be stronger against the one that
    should be weaker: the stronger leaves at most ``tolerance_images`` more images correct at every shared eps."""
    weaker, compared = [], []
    for e in sorted(set(strong) & set(weak)):
        compared.append(f"{labels[0]} {_pct(strong[e], n)} <= {labels[1]} {_pct(weak[e], n)} @{_eps(e)}")
        if strong[e] > weak[e] + tolerance_images:
            weaker.append(f"{labels[0]} {strong[e]}/{n} > {labels[1]} {weak[e]}/{n} at eps {_eps(e)}")
    values = {"tolerance_images": tolerance_images, "weaker": len(weaker)}
    if not compared:
        return Check(name, NA, f"no {labels[0]} and {labels[1]} attack at the same eps", values)
    return Check(name, FAIL if weaker else PASS, "; ".join(weaker or compared), values)


def whitebox_vs_transfer(whitebox: Mapping[float, int], transfer: Mapping[float, int], n: int, *,
                         tolerance_images: int = 0, name: str = "whitebox_vs_transfer") -> Check:
    """Worst-case correct counts per eps, white-box ``{eps: correct}`` against transferred ``{eps: correct}``:
    white-box leaves at most ``tolerance_images`` more images correct."""
    return at_least_as_strong(whitebox, transfer, n, labels=("white-box", "transfer"),
                              tolerance_images=tolerance_images, name=name)


def autoattack_vs_pgd(autoattack: Mapping[float, int], pgd: Mapping[float, int], n: int, *,
                      tolerance_images: int = 0, name: str = "autoattack_vs_pgd") -> Check:
    """AutoAttack starts with APGD-CE, a PGD without a step size to tune, and adds three attacks: it should leave
    no more images correct than PGD-20 at the same eps."""
    return at_least_as_strong(autoattack, pgd, n, labels=("AutoAttack", "PGD"), tolerance_images=tolerance_images,
                              name=name)


def unbounded_reaches_zero(correct: int | None, n: int, *, tolerance_images: int = 0,
                           name: str = "unbounded_reaches_zero") -> Check:
    """The unbounded attack leaves at most ``tolerance_images`` images correct."""
    if correct is None:
        return Check(name, NA, "no unbounded attack", {})
    values = {"correct": correct, "n": n, "accuracy": 100.0 * correct / n if n else float("nan")}
    status = PASS if correct <= tolerance_images else FAIL
    return Check(name, status, f"unbounded attack: {correct}/{n} correct ({_pct(correct, n)})", values)


def gradient_masking(square_correct: int | None, gradient_correct: int | None, n: int, *,
                     threshold: float = 10.0, name: str = "gradient_masking") -> Check:
    """Fails (= flags masking) when Square Attack's accuracy is more than ``threshold`` percentage points below
    the best gradient attack's on the same images at the same eps."""
    if square_correct is None or gradient_correct is None or n == 0:
        return Check(name, NA, "no Square Attack or no gradient attack at its eps", {})
    square, gradient = 100.0 * square_correct / n, 100.0 * gradient_correct / n
    gap = gradient - square
    values = {"square": square, "gradient": gradient, "gap_points": gap, "threshold": threshold}
    detail = f"Square {square:.1f}% vs best gradient {gradient:.1f}% ({gap:+.1f} points; threshold {threshold:g})"
    return Check(name, FAIL if gap > threshold else PASS, detail, values)
