"""DVC: dvc.yaml is generated from the plan, holds exactly Snakemake's jobs, and `dvc repro` re-runs
only what a parameter change touches; `dvc push`/`dvc pull` restore the prepared data."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline_src.config import load_params
from pipeline_src.dvc_yaml import CHECK_STAMP, render
from workflow_helpers import REPO, SMOKE, hermetic_env

Job = tuple[tuple[str, ...], frozenset[str], frozenset[str]]  # (command tokens, outputs, inputs)
DVC_ONLY_STAGES = {"dvc_yaml_check"}  # the guard against a stale dvc.yaml has no Snakemake twin


def _relative(path: str) -> str:
    return path.removeprefix(f"{REPO}/")


def _snakemake_jobs(workdir: Path, overlays: list[Path]) -> set[Job]:
    """Every job of a dry run in an empty folder: command (interpreter and log redirection normalised),
    outputs and inputs (repository paths made relative, as in dvc.yaml)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", "-p",
           "--cores", "2", *(["--configfile", *map(str, overlays)] if overlays else [])]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=hermetic_env())
    assert result.returncode == 0, result.stderr[-3000:]
    jobs, current = set(), None
    for line in result.stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            current = {"rule": m.group(1), "input": "", "output": ""}
        elif current and (m := re.match(r"^\s+(input|output): (.*)$", line)):
            current[m.group(1)] = m.group(2)
        elif current and line.startswith("Shell command: ") and current["rule"] != "all":
            tokens = shlex.split(line.removeprefix("Shell command: "))
            tokens[0] = "python"  # Snakemake runs sys.executable, dvc.yaml the venv's `python`
            if "2>" in tokens:
                del tokens[tokens.index("2>"):tokens.index("2>") + 2]
            files = lambda s: frozenset(_relative(p) for p in s.split(", ") if p)  # noqa: E731
            jobs.add((tuple(_relative(t) for t in tokens), files(current["output"]), files(current["input"])))
            current = None
    return jobs


def _dvc_jobs(dvc_yaml: str) -> set[Job]:
    jobs = set()
    for name, stage in yaml.safe_load(dvc_yaml)["stages"].items():
        if name in DVC_ONLY_STAGES:
            continue
        outs = [o if isinstance(o, str) else next(iter(o)) for o in stage.get("outs", []) + stage.get("metrics", [])]
        deps = [d for d in stage["deps"] if d != CHECK_STAMP]
        jobs.add((tuple(shlex.split(stage["cmd"])), frozenset(outs), frozenset(deps)))
    return jobs


def test_committed_dvc_yaml_is_the_generated_one():
    assert (REPO / "dvc.yaml").read_text() == render(REPO / "params.yaml"), (
        "dvc.yaml is stale: run `python -m pipeline_src dvc-yaml` and commit it")


@pytest.mark.parametrize("config", ["default", "smoke"])
def test_snakemake_and_dvc_run_the_same_commands_on_the_same_files(tmp_path, config):
    overlays = [] if config == "default" else [SMOKE]
    params = tmp_path / "params.yaml"  # DVC reads one file: the overlays merged into it
    params.write_text(yaml.safe_dump(load_params(REPO / "params.yaml", *overlays), sort_keys=False))
    workdir = tmp_path / "work"
    workdir.mkdir()
    snakemake_jobs = _snakemake_jobs(workdir, overlays)
    dvc_jobs = _dvc_jobs(render(params, root=REPO))
    assert len(snakemake_jobs) > 20
    assert snakemake_jobs == dvc_jobs, (sorted(snakemake_jobs - dvc_jobs)[:2], sorted(dvc_jobs - snakemake_jobs)[:2])


# --------------------------------------------------------------------------- dvc repro on the smoke config

def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = hermetic_env(DVC_NO_ANALYTICS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, capture_output=True,
                            text=True, timeout=600, env=env)
    if check:
        assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def generate(repo: Path) -> None:
    subprocess.run([sys.executable, "-m", "pipeline_src", "dvc-yaml"], cwd=repo, check=True, timeout=120)


def stages_run(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '(?:dvc\.yaml:)?([^']+)'", result.stdout + result.stderr))


def hashes(folder: Path) -> dict[Path, str]:
    """sha256 of every file DVC tracks under ``folder`` (not the .gitignore files it writes for git)."""
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and p.name != ".gitignore"}


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory) -> Path:
    """A fresh clone in miniature: the code, the schema and paper tables, params.yaml = params + smoke."""
    repo = tmp_path_factory.mktemp("dvc_repo")
    for folder in ("pipeline_src", "workflow", "paper"):
        shutil.copytree(REPO / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = load_params(REPO / "params.yaml", SMOKE)
    params["tracking"] = {"enabled": False}  # the MLflow side is tested on the Snakemake smoke run
    # DVC runs its stages one at a time, so the fixture builds one table of two rows on one dataset: the
    # DAG-equality test above checks every other stage (Table 4, white-box, the other tables) against Snakemake.
    table1 = params["tables"]["table1_skin4_resnet18"]
    params["tables"] = {"table1_skin4_resnet18": {**table1, "rows": [table1["rows"][0], table1["rows"][-1]]}}  # NA, (1, 10)
    params["datasets"] = {"skin4": params["datasets"]["skin4"]}
    params["combined_tables"] = {}
    params["whitebox"] = {k: v for k, v in params.get("whitebox", {}).items() if k != "tables"} | {"enabled": False}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    generate(repo)
    result = dvc(repo, "repro")
    assert "table_table1_skin4_resnet18" in stages_run(result)
    return repo


@pytest.mark.slow
def test_dvc_repro_builds_every_table_then_nothing_is_stale(dvc_repo):
    for table in yaml.safe_load((dvc_repo / "params.yaml").read_text())["tables"]:
        assert (dvc_repo / "results" / "tables" / f"{table}.csv").is_file()
        assert (dvc_repo / "results" / "tables" / f"{table}_vs_paper.csv").is_file()
    assert json.loads(dvc(dvc_repo, "status", "--json").stdout) == {}


@pytest.mark.slow
def test_dvc_push_then_pull_restores_the_prepared_data(dvc_repo, tmp_path):
    prepared = dvc_repo / "data" / "prepared"
    before = hashes(prepared)
    dvc(dvc_repo, "remote", "add", "-d", "local", str(tmp_path / "remote"))
    dvc(dvc_repo, "push")
    shutil.rmtree(prepared)
    shutil.rmtree(dvc_repo / ".dvc" / "cache")  # only the remote holds the data now
    dvc(dvc_repo, "pull")
    assert {p.suffix for p in before} == {".pt", ".json"} and hashes(prepared) == before


@pytest.mark.slow
def test_changing_one_lambda_reruns_only_that_model_and_its_table(dvc_repo):
    params_path = dvc_repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["tables"]["table1_skin4_resnet18"]["rows"][1] = {"lambda_n": 0.5, "lambda_a": 0}  # was (1, 10)
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    stale = dvc(dvc_repo, "repro", check=False)  # dvc.yaml not regenerated yet: stopped before any training
    assert stale.returncode != 0 and "dvc.yaml is out of date with params.yaml" in stale.stdout + stale.stderr
    assert stages_run(stale) == {"dvc_yaml_check"}

    generate(dvc_repo)
    model = "skin4_resnet18_ln0p5_la0_s0"  # skin4_resnet18_ln0.5_la0_s0: stage names have no dots
    expected = {"dvc_yaml_check", f"train_{model}", f"evaluate_{model}", "table_table1_skin4_resnet18",
                "stats_table1_skin4_resnet18", "figures_table1_skin4_resnet18"}
    status = json.loads(dvc(dvc_repo, "status", "--json").stdout)
    assert {name.removeprefix("dvc.yaml:") for name in status} == expected
    assert stages_run(dvc(dvc_repo, "repro")) == expected
    table = (dvc_repo / "results" / "tables" / "table1_skin4_resnet18.csv").read_text()
    assert "\n0.5,0," in table
