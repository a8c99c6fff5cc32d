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
