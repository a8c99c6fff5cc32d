"""`figures` and `attack-figure` stages: the tables and training records as pictures (matplotlib, PNG).

Per table (``table_figures``): accuracy vs eps per defence and attack, the lambda_n / lambda_a ablations
with 95% Wilson bands, training curves of the loss terms, ours vs the paper, and reconstructions of the
embedded auto-encoder for clean and noisy test images. Per dataset (``attack_figure``): clean,
adversarial and amplified-perturbation images for every attack.

Same inputs, same bytes: the Agg backend, no timestamp or software tag in the PNG metadata, fixed noise.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from pipeline_src.io import atomic_path  # noqa: E402

TABLE_FIGURES = ("accuracy_vs_eps", "ablation", "training", "vs_paper", "reconstructions")
DPI = 100
NOISE_SEED = 0  # the noisy inputs of the reconstruction figure


def figure_paths(prefix: str, kinds: Sequence[str] = TABLE_FIGURES) -> dict[str, str]:
    return {k: f"{prefix}_{k}.png" for k in kinds}


def save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def row_label(lambda_n: str | float, lambda_a: str | float) -> str:
    return "NA" if float(lambda_n) == 0 and float(lambda_a) == 0 else f"ln={lambda_n}, la={lambda_a}"


def _message(ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def _read_stats(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"lambda_n": str, "lambda_a": str, "metric": str})


# --------------------------------------------------------------------------- accuracy vs eps

def plot_accuracy_vs_eps(stats: pd.DataFrame, attacks: dict[str, dict], title: str) -> plt.Figure:
    """One panel per eps-bounded method; x = eps on the 0-255 scale (0 = clean), one line per table row."""
    methods = sorted({cfg["method"] for cfg in attacks.values() if cfg.get("eps") is not None})
    fig, axes = plt.subplots(1, max(1, len(methods)), figsize=(5 * max(1, len(methods)), 3.8), squeeze=False)
    for ax, method in zip(axes[0], methods):
        cols = sorted((cfg["eps"], name) for name, cfg in attacks.items() if cfg["method"] == method)
        for (ln, la), rows in stats.groupby(["lambda_n", "lambda_a"], sort=False):
            acc = rows.set_index("metric")
            xs = [0.0] + [eps for eps, _ in cols]
            names = ["clean"] + [name for _, name in cols]
            ys = [acc.loc[n, "accuracy"] for n in names]
            line, = ax.plot(xs, ys, marker="o", label=row_label(ln, la))
            ax.fill_between(xs, [acc.loc[n, "ci_low"] for n in names], [acc.loc[n, "ci_high"] for n in names],
                            color=line.get_color(), alpha=0.12, linewidth=0)
        ax.set(title=f"{method.upper()}", xlabel="eps (0-255 scale; 0 = clean)", ylabel="accuracy (%)", ylim=(0, 100))
        ax.grid(alpha=0.3)
    if not methods:
        _message(axes[0][0], "no eps-bounded attack in params.yaml")
    else:
        axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- ablations with CI bands

def plot_ablation(stats: pd.DataFrame, title: str) -> plt.Figure:
    """Left: lambda_n with lambda_a = 0; right: lambda_a with lambda_n = 0 (the paper's Table 1 ablations)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    metrics = list(dict.fromkeys(stats["metric"]))
    for ax, (vary, fixed) in zip(axes, (("lambda_n", "lambda_a"), ("lambda_a", "lambda_n"))):
        sub = stats[stats[fixed].astype(float) == 0].copy()
        sub["x"] = sub[vary].astype(float)
        if sub["x"].nunique() < 2:
            _message(ax, f"{vary} ablation: the table needs at least two rows with {fixed} = 0")
            continue
        for metric in metrics:
            m = sub[sub["metric"] == metric].sort_values("x")
            line, = ax.plot(m["x"], m["accuracy"], marker="o", label=metric)
            ax.fill_between(m["x"], m["ci_low"], m["ci_high"], color=line.get_color(), alpha=0.15, linewidth=0)
        positive = sub.loc[sub["x"] > 0, "x"]
        ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
        ax.set(title=f"{vary} ({fixed} = 0)", xlabel=vary, ylabel="accuracy (%)", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: bands = 95% Wilson intervals", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- training curves

def plot_training(histories: dict[str, list[dict]], title: str) -> plt.Figure:
    keys = [("loss", "total loss"), ("loss_c", "L_c (cross-entropy)"), ("loss_n", "L_n (neighbour)"),
            ("loss_a", "L_a (reconstruction)"), ("train_accuracy", "train accuracy"), ("test_accuracy", "test accuracy")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    for ax, (key, name) in zip(axes.flat, keys):
        drawn = False
        for i, (label, history) in enumerate(histories.items()):
            points = [(r["epoch"], r[key]) for r in history if key in r]
            if points:  # a fixed colour per model: panels where some models lack the term still match
                ax.plot(*zip(*points), marker="o", label=label, color=f"C{i % 10}")
                drawn = True
        if drawn:
            ax.set(title=name, xlabel="epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        else:
            _message(ax, f"{name}: no model of this table uses it")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{title}: per-epoch means over training batches", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- ours vs the paper

def plot_vs_paper(vs_paper: pd.DataFrame, stats: pd.DataFrame, title: str) -> plt.Figure:
    """Ours (with 95% Wilson interval) against the published number, one colour per column."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    both = vs_paper.merge(stats[["lambda_n", "lambda_a", "metric", "ci_low", "ci_high"]],
                          on=["lambda_n", "lambda_a", "metric"], how="left").dropna(subset=["paper"])
    if both.empty:
        _message(ax, "the paper has no numbers for these rows")
    for metric, m in both.groupby("metric", sort=False):
        ax.errorbar(m["paper"], m["ours"], yerr=[m["ours"] - m["ci_low"], m["ci_high"] - m["ours"]],
                    fmt="o", capsize=2, label=metric)
    ax.plot([0, 100], [0, 100], color="grey", linewidth=0.8, linestyle="--")
    ax.set(xlim=(0, 100), ylim=(0, 100), xlabel="paper (%)", ylabel="ours (%)", title=title)
    ax.grid(alpha=0.3)
    if not both.empty:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- images

def _show(ax: plt.Axes, img: torch.Tensor, title: str = "") -> None:
    """img: float [C, H, W] in [0, 1]."""
    img = img.clamp(0, 1)
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(img.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def sample_indices(labels: torch.Tensor, k: int) -> list[int]:
    """k test images, one per class in turn, so every class shows up."""
    by_class = [torch.nonzero(labels == c).flatten().tolist() for c in sorted(set(labels.tolist()))]
    out: list[int] = []
    for i in range(max((len(c) for c in by_class), default=0)):
        out += [c[i] for c in by_class if i < len(c)]
    return out[:k]


@torch.inference_mode()
def plot_reconstructions(models: dict[str, torch.nn.Module], images_u8: torch.Tensor, labels: torch.Tensor,
                         sigma: dict[str, float], title: str, k: int = 6) -> plt.Figure:
    """Per model: clean input, its reconstruction, the noisy input (the training noise), its reconstruction."""
    idx = sample_indices(labels, k)
    x = images_u8[idx].float().div(255.0)
    rows: list[tuple[str, torch.Tensor]] = []
    for name, model in models.items():
        generator = torch.Generator().manual_seed(NOISE_SEED)
        noise = torch.rand(x.shape, generator=generator).mul(2 * sigma[name]).sub(sigma[name])
        noisy = (x + noise).clamp(0, 1)
        recon = [model.outputs(v).reconstruction for v in (x, noisy)]
        if model.spec.decoder_activation == "tanh":  # decoder output in [-1, 1]
            recon = [(r + 1) / 2 for r in recon]
        rows += [("clean", x), (f"{name}\nreconstruction", recon[0]),
                 (f"noisy U[-{sigma[name]:g}, {sigma[name]:g}]", noisy), (f"{name}\nreconstruction", recon[1])]
    if not rows:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        _message(ax, "no model of this table trains the decoder (lambda_a > 0)")
        return fig
    fig, axes = plt.subplots(len(rows), len(idx), figsize=(1.3 * len(idx) + 1.6, 1.3 * len(rows)), squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(len(idx)):
            _show(axes[r][c], imgs[c])
        axes[r][0].set_ylabel(name, fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_attacks(clean_u8: torch.Tensor, labels: torch.Tensor, adversarial: dict[str, torch.Tensor],
                 title: str, k: int = 3) -> plt.Figure:
    """One row per attack: (clean, adversarial, perturbation amplified to fill the grey range) per image."""
    idx = sample_indices(labels, k)
    fig, axes = plt.subplots(max(1, len(adversarial)), 3 * len(idx), figsize=(1.2 * 3 * len(idx) + 1.5,
                             1.4 * max(1, len(adversarial))), squeeze=False)
    x = clean_u8[idx].float().div(255.0)
    for r, (name, adv_u8) in enumerate(adversarial.items()):
        adv = adv_u8[idx].float().div(255.0)
        delta = adv - x
        peak = float(delta.abs().max())
        gain = 0.5 / peak if peak > 0 else 1.0
        for i in range(len(idx)):
            _show(axes[r][3 * i], x[i], "clean" if r == 0 else "")
            _show(axes[r][3 * i + 1], adv[i], "adversarial" if r == 0 else "")
            _show(axes[r][3 * i + 2], 0.5 + gain * delta[i], "perturbation, amplified" if r == 0 else "")
        axes[r][0].set_ylabel(f"{name}\nLinf {peak * 255:.0f}/255\nshown x{gain:.0f}", fontsize=7, rotation=0,
                              ha="right", va="center")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the stages

def table_figures(table: str, stats_path: str | Path, vs_paper_path: str | Path, train_metrics: Sequence[str | Path],
                  attack_metrics: Sequence[str | Path], models: Sequence[str | Path], test_path: str | Path,
                  paths: dict[str, str]) -> dict[str, str]:
    """Write every per-table figure to ``paths`` (kind -> path; the kinds are TABLE_FIGURES); returns ``paths``."""
    from pipeline_src.checkpoints import load_checkpoint
    from pipeline_src.data.split import load_split

    torch.set_num_threads(1)  # a few images through small models: threads cost more than they give
    if set(paths) != set(TABLE_FIGURES):
        raise ValueError(f"figures: give one path for each of {', '.join(TABLE_FIGURES)}, not {', '.join(paths)}")
    stats = _read_stats(stats_path)
    attacks = {}
    for p in attack_metrics:
        record = json.loads(Path(p).read_text())
        attacks[record["attack"]] = record["config"]
    attacks = {a: c for a, c in attacks.items() if a in set(stats["metric"])}
    save(plot_accuracy_vs_eps(stats, attacks, f"{table}: accuracy vs eps (bands: 95% Wilson)"), paths["accuracy_vs_eps"])
    save(plot_ablation(stats, table), paths["ablation"])

    histories = {}
    seeds = {json.loads(Path(p).read_text())["config"]["seed"] for p in train_metrics}
    for p in train_metrics:
        record = json.loads(Path(p).read_text())
        cfg = record["config"]
        label = row_label(_fmt(cfg["lambda_n"]), _fmt(cfg["lambda_a"])) + (f" s{cfg['seed']}" if len(seeds) > 1 else "")
        histories[label] = record["history"]
    save(plot_training(histories, table), paths["training"])

    vs_paper = pd.read_csv(vs_paper_path, dtype={"lambda_n": str, "lambda_a": str, "metric": str})
    save(plot_vs_paper(vs_paper, stats, f"{table}: ours vs the paper"), paths["vs_paper"])

    test = load_split(test_path)
    loaded, sigma = {}, {}
    for p in models:
        ckpt = load_checkpoint(p)
        name = row_label(_fmt(ckpt.config["lambda_n"]), _fmt(ckpt.config["lambda_a"]))
        loaded[name], sigma[name] = ckpt.model, float(ckpt.config["noise_sigma"])
    save(plot_reconstructions(loaded, test.images, test.labels, sigma,
                              f"{table}: embedded auto-encoder on test images"), paths["reconstructions"])
    return paths


def attack_figure(dataset: str, test_path: str | Path, adversarial: dict[str, str | Path], out: str | Path) -> None:
    from pipeline_src.data.split import load_split
    from pipeline_src.io import load_torch

    test = load_split(test_path)
    sets = {name: load_torch(p)["images"] for name, p in adversarial.items()}
    save(plot_attacks(test.images, test.labels, sets, f"{dataset}: attacks crafted on the surrogate"), out)


def _fmt(x: float) -> str:
    from pipeline_src.config import fmt_number

    return fmt_number(x) if math.isfinite(float(x)) else str(x)
