"""Running the workflow from tests: a hermetic environment and one Snakemake call (used by conftest and tests)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.yaml"
SMOKE_CORES = "4"  # more jobs than the CI's 2 cores: the run doubles as the MLflow parallel-safety test


def hermetic_env(**extra: str) -> dict[str, str]:
    """The test's environment without a user's MLflow store: runs go to sqlite:///mlflow.db in the workdir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(extra)
    return env


def run_snakemake(workdir: Path, *args: str, overlays: tuple[Path, ...] = (), cores: str = "2",
                  env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--configfile", str(SMOKE), *map(str, overlays), "--cores", cores, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env or hermetic_env())


def tracked_runs(workdir: Path, experiments: tuple[str, ...]) -> dict[str, list]:
    """{stage: [mlflow Run]} of a run's local store (sqlite:///mlflow.db in the workdir)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    ids = {e.name: e.experiment_id for e in client.search_experiments()}
    assert set(experiments) <= set(ids), f"experiments {sorted(ids)} lack some of {experiments}"
    found: dict[str, list] = {}
    for run in client.search_runs([ids[d] for d in experiments], max_results=10000):
        found.setdefault(run.data.tags["stage"], []).append(run)
    return found


def expected_tracked_jobs(plan) -> int:
    """One MLflow run per training, attack, evaluation and table job of the plan, Table 4's included
    (a denoiser training per denoiser, an evaluation per denoised row, a run per combined table)."""
    jobs = len(plan.models) + len(plan.datasets) * len(plan.attacks) + len(plan.evaluated_models()) + len(plan.tables)
    jobs += len(plan.tables) + len(plan.datasets)  # report.smk: figures per table, attack figure per dataset
    jobs += len(plan.whitebox_models()) + len(plan.whitebox_tables)  # beyond the paper: tests/test_whitebox.py
    return jobs + len(plan.denoisers) + sum(r.denoiser is not None for rows in plan.combined.values() for r in rows) \
        + len(plan.combined)


def database_errors(workdir: Path, stderr: str) -> list[str]:
    """Snakemake's stderr and every job log that mentions an SQLite/MLflow database error."""
    texts = {"snakemake stderr": stderr, **{str(p): p.read_text() for p in sorted((workdir / "logs").rglob("*.log"))}}
    return [name for name, text in texts.items()
            if "database is locked" in text.lower() or "operationalerror" in text.lower()]
