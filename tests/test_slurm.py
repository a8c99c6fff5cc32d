"""Scale-out: the cluster profiles plan every job with its resources, and a real one-node SLURM
(munged + slurmctld + slurmd started by the test, tests/slurm_cluster.py) runs a tiny workflow through
``sbatch`` with profiles/slurm and gives the same tables as a local run."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from slurm_cluster import LocalSlurm, missing_binaries
from workflow_helpers import REPO, SMOKE, hermetic_env, run_snakemake

from pipeline_src.config import ParamsError, load_params, validate_params
from pipeline_src.resources import check_resources, job_resources

RULES = ("prepare", "train", "attack", "evaluate", "table", "train_denoiser", "evaluate_denoised",
         "combined_table", "stats", "figures", "attack_figure",
         "whitebox", "whitebox_table")


def kind(rule: str) -> str:
    """The resources entry a rule reads: generated rule families share one (evaluate_denoised_<table>)."""
    return "evaluate_denoised" if rule.startswith("evaluate_denoised_") else rule


def plan_resources(stdout: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of every job a dry run prints."""
    jobs, rule = [], None
    for line in stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
            jobs.append((rule, {}))
        elif rule and (m := re.match(r"^\s+resources: (.*)$", line)):
            jobs[-1][1].update(kv.split("=", 1) for kv in m.group(1).split(", "))
    return jobs


@pytest.mark.heavy  # the SLURM executor (a dry run): not in the edit loop
def test_slurm_profile_dry_run_plans_every_job_with_its_resources(tmp_path):
    overlay = tmp_path / "gpu.yaml"
    overlay.write_text(yaml.safe_dump({"resources": {"train": {"gpu": 1, "mem_mb": 3000, "runtime": 90}}}))
    result = run_snakemake(tmp_path / "work", "-n", "--profile", str(REPO / "profiles" / "slurm"),
                           overlays=(overlay,))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "profiles/slurm" in result.stderr
    cfg = validate_params(load_params(REPO / "params.yaml", SMOKE, overlay))
    jobs = [(kind(rule), res) for rule, res in plan_resources(result.stdout) if rule != "all"]
    assert {rule for rule, _ in jobs} == set(RULES)
    assert len(jobs) > 20
    for rule, res in jobs:
        want = job_resources(cfg, rule)
        assert int(res["mem_mb"]) == want.mem_mb, (rule, res)
        assert int(res["runtime"]) == want.runtime, (rule, res)
        assert int(res.get("gpu", 0)) == want.gpu, (rule, res)
    assert {res["mem_mb"] for rule, res in jobs if rule == "train"} == {"3000"}
    assert {res.get("gpu") for rule, res in jobs if rule == "train"} == {"1"}
    assert all("gpu" not in res for rule, res in jobs if rule != "train")


def test_threads_follow_params(tmp_path):
    overlay = tmp_path / "threads.yaml"
    overlay.write_text(yaml.safe_dump({"training": {"threads": 2}, "resources": {"table": {"threads": 3}}}))
    result = run_snakemake(tmp_path / "work", "-n", "--cores", "4", overlays=(overlay,))
    assert result.returncode == 0, result.stderr[-3000:]
    threads: dict[str, set[str]] = {}
    rule = None
    for line in result.stdout.splitlines():
        if m := re.match(r"^rule (\w+):", line):
            rule = kind(m.group(1))
        elif rule and (m := re.match(r"^\s+threads: (\d+)$", line)):
            threads.setdefault(rule, set()).add(m.group(1))
    assert threads == {"train": {"2"}, "attack": {"2"}, "evaluate": {"2"}, "train_denoiser": {"2"},
                       "evaluate_denoised": {"2"}, "whitebox": {"2"}, "table": {"3"}}  # others: 1 (not printed)


def test_resources_entries_are_checked():
    cfg = validate_params(load_params(REPO / "params.yaml", SMOKE))
    check_resources(cfg, set(RULES))
    bad = {**cfg, "resources": {**cfg["resources"], "trian": {"mem_mb": 100}}}
    with pytest.raises(ParamsError, match=r"'resources.trian' names no rule of the workflow; rules: default"):
        check_resources(bad, set(RULES))
    bad = {**cfg, "resources": {"train": {"threads": 4}}}
    with pytest.raises(ParamsError, match=r"'resources.train.threads' = 4 differs from 'training.threads' = 1"):
        check_resources(bad, set(RULES))
    ok = {**cfg, "resources": {"default": {"mem_mb": 10, "runtime": 5, "gpu": 0}, "table": {"threads": 4, "gpu": 1}}}
    assert job_resources(ok, "table").snakemake() == {"mem_mb": 10, "runtime": 5, "gpu": 1}
    assert job_resources(ok, "table").threads == 4
    assert job_resources(ok, "figures") == job_resources(ok, "prepare")  # a rule without an entry: default, 1 thread
    assert job_resources(ok, "figures").threads == 1 and job_resources(ok, "train").threads == 1


def test_a_misspelt_rule_stops_the_workflow(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"resources": {"trian": {"mem_mb": 100}}}))
    result = run_snakemake(tmp_path / "work", "-n", overlays=(bad,))
    assert result.returncode != 0
    assert "'resources.trian' names no rule of the workflow" in result.stdout + result.stderr


# --------------------------------------------------------------------------- a real SLURM

def tiny_params() -> dict:
    """The smoke config cut down to one table of two rows and one attack, without tracking, Table 4 or
    white-box jobs: 11 jobs (8 up to the table, then its stats and figures and the attack figure)."""
    cfg = load_params(REPO / "params.yaml", SMOKE)
    cfg["tables"] = {"table2_chest3_resnet18": cfg["tables"]["table2_chest3_resnet18"]}
    cfg["datasets"] = {"chest3": cfg["datasets"]["chest3"]}
    cfg["attacks"] = {"fgsm_eps8": {"method": "fgsm", "eps": 8}}
    cfg["tracking"] = {"enabled": False}
    cfg["combined_tables"] = {}
    cfg["whitebox"] = {k: v for k, v in cfg.get("whitebox", {}).items() if k != "tables"} | {"enabled": False}
    return cfg


@pytest.fixture(scope="module")
def tiny_workflow(tmp_path_factory) -> Path:
    """This workflow with a tiny params.yaml. A copy, not a --configfile overlay: overlays can only add
    tables and attacks, and the jobs inside SLURM must see the very config the submitting run saw."""
    root = tmp_path_factory.mktemp("tiny")
    shutil.copy(REPO / "Snakefile", root / "Snakefile")
    for name in ("workflow", "profiles", "pipeline_src", "paper"):
        (root / name).symlink_to(REPO / name)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return root


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        pytest.skip(f"SLURM/munge not installed ({', '.join(missing)} missing): "
                    "apt-get install slurm-wlm munge (what .ci/run does)")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs; run the test suite as root (CI does)")
    cluster = LocalSlurm(Path(tmp_path_factory.mktemp("slurm")))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _scontrol_jobs(cluster: LocalSlurm) -> list[dict[str, str]]:
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, env=cluster.env(),
                         check=True, timeout=30).stdout
    jobs = []
    for line in out.splitlines():
        if line.strip() and "No jobs" not in line:
            jobs.append(dict(f.split("=", 1) for f in re.findall(r"(\w+=\S*)", line)))
    return jobs


@pytest.mark.heavy
@pytest.mark.slow
def test_workflow_on_a_one_node_slurm_matches_the_local_run(slurm, tiny_workflow, tmp_path):
    snakefile = str(tiny_workflow / "Snakefile")
    env = slurm.env(hermetic_env())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `snakemake` inside the jobs

    # the local run alongside: the SLURM run mostly waits between status checks
    local = subprocess.Popen([sys.executable, "-m", "snakemake", "-s", snakefile, "-d", str(tmp_path / "local"),
                              "--cores", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    start = time.monotonic()
    cmd = [sys.executable, "-m", "snakemake", "-s", snakefile, "-d", str(tmp_path / "slurm"),
           "--workflow-profile", str(tiny_workflow / "profiles" / "slurm"),
           # test cluster without accounting: squeue sees finished jobs for MinJobAge=3600 s >= 3 x 2 s
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "--seconds-between-status-checks", "2", "--slurm-keep-successful-logs",
           "--latency-wait", "5", "--retries", "0", "--jobs", "4"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env)
    elapsed = time.monotonic() - start
    (tmp_path / "snakemake.stderr").write_text(result.stderr)
    try:
        local_stderr = local.communicate(timeout=300)[1]
    finally:
        if local.poll() is None:
            local.kill()
    assert result.returncode == 0, result.stderr[-4000:] + "\n" + slurm.logs()
    assert local.returncode == 0, local_stderr[-3000:]

    # every job went through sbatch: as many submissions as jobs, one SLURM log each
    stats = re.search(r"^total\s+(\d+)$", result.stderr, re.M)
    n_jobs = int(stats.group(1)) - 1  # rule all runs no command
    assert n_jobs == 11
    assert slurm.submitted_jobs() == n_jobs, slurm.logs()
    logs = list((tmp_path / "slurm" / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == n_jobs
    # ... with what params.yaml's resources section asked for
    cfg = validate_params(tiny_params())
    jobs = _scontrol_jobs(slurm)
    assert len(jobs) == n_jobs and all(j["JobState"] == "COMPLETED" for j in jobs), jobs
    for job in jobs:
        rule = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", job["Comment"]).group(1)
        want = job_resources(cfg, rule)
        assert job["MinMemoryNode"] == f"{want.mem_mb}M", (rule, job)
        assert job["TimeLimit"] == f"{want.runtime // 60:02d}:{want.runtime % 60:02d}:00", (rule, job)
        assert int(job["NumCPUs"]) == want.threads, (rule, job)
        assert job["Partition"] == "test"

    local_tables = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local" / "results" / "tables").glob("*.csv"))
    slurm_tables = sorted(p.relative_to(tmp_path / "slurm") for p in (tmp_path / "slurm" / "results" / "tables").glob("*.csv"))
    assert local_tables == slurm_tables and len(local_tables) == 3  # the table, its comparison and its stats
    for rel in local_tables:
        assert (tmp_path / "slurm" / rel).read_bytes() == (tmp_path / "local" / rel).read_bytes(), rel
    print(f"SLURM run: {n_jobs} jobs through sbatch in {elapsed:.0f} s")
