"""Shared fixtures: the repository root, and one smoke run of the whole workflow for all test modules."""
from __future__ import annotations

from pathlib import Path

import pytest

from workflow_helpers import REPO, SMOKE_CORES, run_snakemake


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke config through Snakemake, once per test session (about a minute on 2 cores)."""
    workdir = tmp_path_factory.mktemp("smoke")
    result = run_snakemake(workdir, cores=SMOKE_CORES)
    (workdir / "snakemake.stderr").write_text(result.stderr)  # the MLflow tests read it for database errors
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
