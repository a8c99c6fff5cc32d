"""Shared fixtures: the repository root, and one smoke run of the whole workflow for all test modules."""
from __future__ import annotations

from pathlib import Path

import pytest

from workflow_helpers import REPO, SMOKE_CORES, hermetic_env, run_snakemake


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """The smoke config through Snakemake, once per test session (about 3 minutes on 2 cores)."""
    workdir = tmp_path_factory.mktemp("smoke")
    # Credentials in the environment, as a user with Kaggle set up has them: test_reliability greps every
    # file of the run for the key.
    env = hermetic_env(KAGGLE_USERNAME="smoke-test-user", KAGGLE_KEY="0123456789abcdef-not-a-real-kaggle-key")
    result = run_snakemake(workdir, cores=SMOKE_CORES, env=env)
    (workdir / "snakemake.stderr").write_text(result.stderr)  # the MLflow tests read it for database errors
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
