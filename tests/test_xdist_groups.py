"""`make test` on several cores keeps tests that share state together (tests/xdist_groups.py): a toy suite run
by pytest-xdist as `make test` runs ours. Fails if a pytest or xdist upgrade drops the groups again (pytest 9.2
with xdist 3.8 did: pytest-dev/pytest-xdist#1386), which would build the smoke run and the DVC repository on
every worker and split a module's fixture between them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

CONFTEST = f"""
import os, sys, time
import pytest
sys.path.insert(0, {str(TESTS)!r})
from xdist_groups import pytest_collection_modifyitems  # noqa: F401

def record(what):
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"{{os.environ.get('PYTEST_XDIST_WORKER', 'none')}} {{what}}\\n")

@pytest.fixture(scope="session")
def smoke_run():
    record("setup smoke_run")
    return 1
"""

SMOKE_TESTS = """
import pytest, time
from conftest import record

def test_reads_the_run(smoke_run):
    record("test smoke")
    time.sleep(0.3)

@pytest.mark.slow
def test_runs_again(smoke_run):
    record("test smoke")
    time.sleep(0.3)
"""

MODULE_FIXTURE_TESTS = """
import pytest, time
from conftest import record

@pytest.fixture(scope="module")
def repository():
    record("setup repository")
    return 1

@pytest.mark.parametrize("i", range(3))
def test_changes_the_repository(repository, i):
    record("test repository")
    time.sleep(0.3)
"""

PLAIN_TESTS = """
import pytest, time
from conftest import record

@pytest.mark.parametrize("i", range(8))
def test_alone(i):
    record("test plain")
    time.sleep(0.2)
"""


def test_tests_that_share_a_run_or_a_module_fixture_stay_on_one_worker_and_long_units_start_first(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_a_plain.py").write_text(PLAIN_TESTS)  # first in file order
    (tmp_path / "test_b_repository.py").write_text(MODULE_FIXTURE_TESTS)
    (tmp_path / "test_c_smoke.py").write_text(SMOKE_TESTS)
    (tmp_path / "test_d_smoke_too.py").write_text(SMOKE_TESTS)
    record = tmp_path / "record.txt"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2",
                             "--dist", "loadgroup", "--no-loadscope-reorder", "-m", "", str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")},
                                 "RECORD": str(record)})  # not this run's xdist worker variables
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line.split(" ", 1) for line in record.read_text().splitlines()]
    workers = lambda what: [w for w, x in lines if x == what]  # noqa: E731
    assert workers("setup smoke_run") and len(workers("setup smoke_run")) == 1  # built once, not per worker
    assert len(workers("setup repository")) == 1
    assert set(workers("test smoke")) == set(workers("setup smoke_run")) and len(workers("test smoke")) == 4
    assert set(workers("test repository")) == set(workers("setup repository"))
    assert set(workers("test plain")) == {"gw0", "gw1"}  # the rest is spread
    # the unit with a slow test goes first, although its files come last
    smoke_worker = workers("setup smoke_run")[0]
    assert [x for w, x in lines if w == smoke_worker][:2] == ["setup smoke_run", "test smoke"]

