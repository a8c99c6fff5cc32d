"""bench/compute.py: its section replaces itself in BENCHMARKS.md, ratios and byte-identity are read right,
and a tiny old-vs-new run works end to end (no timing asserts)."""
from __future__ import annotations

import subprocess

import pytest

from workflow_helpers import REPO, load_bench_script


@pytest.fixture(scope="module")
def compute():
    return load_bench_script("compute")


def test_section_is_appended_once_then_replaced_in_place(compute, tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nfigures 1-5\n")
    compute.write_section(path, f"{compute.BEGIN}\nfirst\n{compute.END}\n")
    path.write_text(path.read_text() + "\n## GPU\nkept\n")
    compute.write_section(path, f"{compute.BEGIN}\nsecond\n{compute.END}\n")
    text = path.read_text()
    assert text.count(compute.BEGIN) == 1 and "second" in text and "first" not in text
    assert text.startswith("# Benchmarks\n\nfigures 1-5\n") and text.rstrip().endswith("kept")


def test_summary_takes_the_median_ratio_and_flags_differing_outputs(compute):
    def runs(times, digests):
        return [{"work_s": t, "wall_s": t + 1, "digest": d} for t, d in zip(times, digests)]

    measured = {"results": {
        "same": {"task": "train", "old": runs([4, 6, 9], "aaa"), "new": runs([2, 2, 3], "aaa"),
                 "digests": {"old": list("aaa"), "new": list("aaa")}},
        "differs": {"task": "cw", "old": runs([1], "a"), "new": runs([1], "b"),
                    "digests": {"old": ["a"], "new": ["b"]}},
    }, "pass_s": [0.1], "loads": ["0/0/0"]}
    rows = {r["label"]: r for r in compute.summarize(measured)}
    assert rows["same"]["ratio"] == 3.0 and rows["same"]["range"] == (2.0, 3.0)
    assert rows["same"]["identical"] == "yes" and rows["differs"]["identical"] == "**no**"
    assert rows["same"]["old_s"] == 4 and rows["same"]["new_s"] == 2


@pytest.mark.heavy  # a second run: the benchmark's jobs on HEAD's code and on this tree's
def test_tiny_run_against_head_writes_the_section(compute, tmp_path):
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n")
    assert compute.main(["--tiny", "--old-ref", "HEAD", "--only", "evaluate", "--out", str(out)]) == 0
    text = out.read_text()
    assert compute.BEGIN in text and compute.END in text
    row = next(line for line in text.splitlines() if line.startswith("| evaluate:"))
    assert row.rstrip().endswith("| yes |")  # HEAD against this tree: the same record


def test_bench_run_keeps_the_section_when_it_rewrites_the_file(compute, tmp_path):
    run = load_bench_script("run")
    path = tmp_path / "BENCHMARKS.md"
    section = f"{compute.BEGIN}\n| task | ratio |\n{compute.END}"
    path.write_text(f"# Benchmarks\n\nold figures\n\n{section}\n\n## GPU\n")
    assert run.kept_sections(path) == f"\n{section}\n"
    assert run.kept_sections(tmp_path / "missing.md") == ""
