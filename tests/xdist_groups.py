"""How `make test` spreads the suite over the cores (pytest-xdist, ``--dist loadgroup --no-loadscope-reorder``).

Tests that share state stay on one worker, in file order: every test that reads the smoke run (one smoke run
per worker, so it is built once), and the tests of a module that share a module-scoped fixture (a DVC
repository that successive tests change, a SLURM cluster), so that no fixture is built twice. The units with
the most end-to-end (``slow``) tests go first: the long ones start at once and the many short tests fill in
around them, instead of one long test starting last on an otherwise idle machine. Without xdist this does
nothing: plain `pytest` keeps the file order.
"""
from __future__ import annotations

from collections import Counter

import pytest


def shared_state(item: pytest.Item) -> str | None:
    """The group of tests ``item`` must run with, or None if it can run on any worker."""
    if "smoke_run" in item.fixturenames:
        return "smoke_run"
    fixtures = getattr(item, "_fixtureinfo", None)
    scopes = {defs[-1].scope for defs in fixtures.name2fixturedefs.values()} if fixtures else set()
    return item.module.__name__ if scopes & {"module", "package", "class"} else None


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's worker hook, which reads the group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "loadgroup", False):  # set in xdist's workers under --dist loadgroup
        return
    shared = {id(item): shared_state(item) for item in items}
    for item in items:
        if shared[id(item)]:
            item.add_marker(pytest.mark.xdist_group(shared[id(item)]))
    unit = {id(item): shared[id(item)] or item.nodeid for item in items}  # what xdist sends to one worker
    slow = Counter(unit[id(item)] for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[unit[id(item)]])  # stable: file order within and between units
