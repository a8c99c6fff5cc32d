"""Shared fixtures: the repository root, and one smoke run of the whole workflow for all test modules."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from workflow_helpers import REPO, SMOKE, SMOKE_CORES, hermetic_env, make_clone, snakemake_in
from xdist_groups import pytest_collection_modifyitems  # noqa: F401  (a hook: pytest finds it by its name)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A clone whose params.yaml is the smoke config, run by plain `snakemake` inside it (its default run),
    once per test session. Tests that edit code or parameters put back bytes and mtimes, or copy it first.

    PIPELINE_TEST_SMOKE_RUN=<clone> reuses a finished smoke clone of the current code (a developer's
    shortcut between test sessions; CI never sets it)."""
    reuse = os.environ.get("PIPELINE_TEST_SMOKE_RUN")
    if reuse and (Path(reuse) / "results").is_dir():
        return Path(reuse)
    root = make_clone(tmp_path_factory.mktemp("smoke") / "clone", SMOKE)
    # Credentials in the environment, as a user with Kaggle set up has them: test_reliability greps every
    # file of the run for the key.
    env = hermetic_env(KAGGLE_USERNAME="smoke-test-user", KAGGLE_KEY="0123456789abcdef-not-a-real-kaggle-key")
    result = snakemake_in(root, cores=SMOKE_CORES, env=env)
    (root / "snakemake.stderr").write_text(result.stderr)  # the MLflow tests read it for database errors
    assert result.returncode == 0, result.stderr[-4000:]
    return root
