"""bench/jobs.py: per-rule job-seconds and memory from Snakemake's `benchmark:` files (no timing asserts)."""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap

import pytest

from workflow_helpers import REPO

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


@pytest.fixture(scope="module")
def jobs():
    spec = importlib.util.spec_from_file_location("bench_jobs", REPO / "bench" / "jobs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_jobs"] = module
    spec.loader.exec_module(module)
    return module


def _tsv(root, rel, rows, end):
    path = root / "benchmarks" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join("\t".join(map(str, r)) + "\n" for r in rows))
    os.utime(path, (end, end))


def test_benchmark_files_sum_into_the_per_rule_table(jobs, tmp_path):
    # rule, wildcard path, rows (s, h:m:s, max_rss, max_vms, max_uss, max_pss, io_in, io_out, mean_load, cpu), end
    _tsv(tmp_path, "train/skin4_resnet18_ln1_la10_s0.tsv", [(30.0, "0:00:30", 900.5, 2000, 700, 650.2, 1, 2, 95, 29)], 1130)
    _tsv(tmp_path, "train/skin4_resnet18_ln0_la0_s0.tsv", [(10.0, "0:00:10", 800, 2000, 600, 500, 1, 2, 90, 9)], 1110)
    _tsv(tmp_path, "train/skin4_surrogate_resnet18_s1.tsv", [(20.0, "0:00:20", 810, 2000, 600, 520, 1, 2, 90, 19)], 1150)
    # a job too short to sample: Snakemake writes NA
    _tsv(tmp_path, "attack/skin4/fgsm_eps4.tsv", [(0.4, "0:00:00", "NA", "NA", "NA", "NA", "NA", "NA", "NA", "NA")], 1151)
    # repeat("...", 2): one job, mean seconds, largest memory
    _tsv(tmp_path, "attack/skin4/cw.tsv", [(100.0, "0:01:40", 1000, 3000, 900, 800, 0, 0, 99, 98),
                                           (110.0, "0:01:50", 1100, 3000, 900, 850, 0, 0, 99, 108)], 1300)
    s = jobs.summarize_benchmarks(tmp_path)
    assert s["jobs"] == 5 and s["source"] == "benchmarks"
    train, attack = s["per_rule"]["train"], s["per_rule"]["attack"]
    assert (train["jobs"], train["seconds"], train["max"]) == (3, pytest.approx(60.0), pytest.approx(30.0))
    assert train["max_rss_mib"] == pytest.approx(900.5) and train["max_pss_mib"] == pytest.approx(650.2)
    assert (attack["jobs"], attack["seconds"]) == (2, pytest.approx(105.4))
    assert attack["max_rss_mib"] == pytest.approx(1100)  # the NA job does not poison the maximum
    assert s["detail"]["train"] == {"resnet18 defended": {"jobs": 1, "seconds": pytest.approx(30.0)},
                                    "resnet18 NA": {"jobs": 1, "seconds": pytest.approx(10.0)},
                                    "resnet18 surrogate": {"jobs": 1, "seconds": pytest.approx(20.0)}}
    assert s["detail"]["attack"] == {"cw": {"jobs": 1, "seconds": pytest.approx(105.0)},
                                     "fgsm": {"jobs": 1, "seconds": pytest.approx(0.4)}}
    assert s["job_seconds"] == pytest.approx(165.4)
    assert s["span_s"] == pytest.approx(1300 - 1100)  # first start = 1110 - 10
    # overlaps: defended (1100-1130), NA (1100-1110), surrogate (1130-1150), cw (1195-1300): at most 650.2 + 500
    assert s["peak_pss_bound_mib"] == pytest.approx(1150.2)
    table = jobs.render_rule_table(s)
    assert table[0].endswith("| max RSS/job (MiB) | max PSS/job (MiB) |")
    assert table[2] == "| attack | 2 | 105 | 63.7% | 52.7 | 105.0 | 1100 | 850 |"
    assert "| &nbsp;&nbsp;train: resnet18 defended | 1 | 30 | 18.1% | 30.0 | | | |" in table


def test_a_file_that_is_not_a_benchmark_names_itself(jobs, tmp_path):
    path = tmp_path / "benchmarks" / "train" / "x.tsv"
    path.parent.mkdir(parents=True)
    path.write_text("time\n3\n")
    with pytest.raises(ValueError, match=r"x\.tsv is not a Snakemake benchmark file"):
        jobs.summarize_benchmarks(tmp_path)
    with pytest.raises(FileNotFoundError, match="add `benchmark:`"):
        jobs.summarize_benchmarks(tmp_path / "elsewhere")


@pytest.mark.slow
def test_reads_what_snakemake_itself_writes(jobs, tmp_path):
    """A real `benchmark:` file from the installed Snakemake, with the line pattern the rules use."""
    (tmp_path / "Snakefile").write_text(textwrap.dedent('''
        rule all:
            input: expand("out/{name}.txt", name=["a", "b"])
        rule work:
            output: "out/{name}.txt"
            benchmark: "benchmarks/work/{name}.tsv"
            shell: "python -c 'import time; x = bytearray(50_000_000); time.sleep(0.6)' && touch {output}"
    '''))
    snakemake = [sys.executable, "-m", "snakemake", "--cores", "1", "--quiet", "all"]
    subprocess.run(snakemake, cwd=tmp_path, check=True, capture_output=True, timeout=300)
    s = jobs.summarize_benchmarks(tmp_path)
    work = s["per_rule"]["work"]
    assert work["jobs"] == 2 and work["seconds"] >= 1.2
    assert math.isnan(work["max_rss_mib"]) or work["max_rss_mib"] > 40  # the 50 MB buffer, when sampled


def test_bench_run_figure_4_prefers_the_benchmark_files(jobs, tmp_path):
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "bench" / "run.py")
    run = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = run
    spec.loader.exec_module(run)
    _tsv(tmp_path, "prepare/skin4.tsv", [(3.0, "0:00:03", 300, 900, 200, 250, 0, 0, 90, 3)], 1000)
    s = run.summarize_run(tmp_path)  # no .snakemake/metadata at all: the benchmark files suffice
    assert s["source"] == "benchmarks" and s["per_rule"]["prepare"]["jobs"] == 1
    with pytest.raises(FileNotFoundError, match="no Snakemake metadata"):
        run.summarize_run(tmp_path / "empty")
