"""bench/run.py runs on a tiny setting and writes a well-formed BENCHMARKS.md (no timing asserts)."""
from __future__ import annotations

import base64
import json
import re

import pytest

from workflow_helpers import load_bench_script


@pytest.fixture(scope="module")
def bench():
    return load_bench_script("run")


def fake_run(root, jobs):
    """A .snakemake/metadata like Snakemake's: one record per output, the outputs of a job share its hash."""
    meta = root / ".snakemake" / "metadata"
    meta.mkdir(parents=True)
    for rule, job_hash, start, end, outputs, cmd in jobs:
        for i, out in enumerate(outputs):
            rec = {"rule": rule, "job_hash": job_hash, "starttime": start + 1e-4 * i, "endtime": end,
                   "incomplete": False, "shellcmd": cmd}
            (meta / base64.b64encode(out.encode()).decode()).write_text(json.dumps(rec))
    return root


def test_workflow_summary_groups_outputs_into_jobs(bench, tmp_path):
    run = fake_run(tmp_path, [
        ("train", 1, 100.0, 130.0, ["models/a.pt", "metrics/a.json"], "python -m pipeline_src train --arch resnet18 "
         "--lambda_n 1.0 --lambda_a 10.0 --out models/a.pt"),
        ("train", 2, 100.0, 110.0, ["models/b.pt", "metrics/b.json"], "python -m pipeline_src train --arch resnet18 "
         "--lambda_n 0.0 --lambda_a 0.0 --out models/b.pt"),
        ("attack", 3, 130.0, 150.0, ["adv/cw.pt", "metrics/cw.json"], "python -m pipeline_src attack --method cw"),
    ])
    s = bench.summarize_workflow(run)
    assert s["jobs"] == 3 and s["stale"] == 0
    assert s["per_rule"]["train"]["jobs"] == 2
    assert s["per_rule"]["train"]["seconds"] == pytest.approx(40.0)
    assert s["span_s"] == pytest.approx(50.0)
    assert s["detail"]["train"] == {"resnet18 defended": {"jobs": 1, "seconds": pytest.approx(30.0)},
                                    "resnet18 NA": {"jobs": 1, "seconds": pytest.approx(10.0)}}
    assert s["detail"]["attack"]["cw"]["jobs"] == 1


def test_tiny_run_writes_a_well_formed_file(bench, tmp_path):
    pytest.importorskip("foolbox")
    run = fake_run(tmp_path / "run", [("prepare", 7, 10.0, 12.0, ["data/train.pt", "data/test.pt"], "prepare")])
    out = tmp_path / "BENCHMARKS.md"
    assert bench.main(["--tiny", "--out", str(out), "--workflow-dir", str(run)]) == 0
    text = out.read_text()
    assert text.startswith("# Benchmarks")
    assert "python bench/run.py --tiny" in text and "torch threads" in text and "nproc" in text
    summary = [line for line in text.splitlines() if re.match(r"\| [1-4] \|", line)]
    assert len(summary) == 4
    for line in summary[:3]:
        assert "**met**" in line or "**not met**" in line
    for heading in ("## 1. C&W-L2", "## 2. Defended training step", "## 3. Share", "## 4. Default workflow"):
        assert heading in text
    assert "| prepare | 1 |" in text
    assert not list(tmp_path.glob(".BENCHMARKS.md.*"))  # the temporary file was renamed
