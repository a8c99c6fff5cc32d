"""The smoke config through Snakemake end to end, then what a parameter change re-runs."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_src.config import load_params, validate_params
from pipeline_src.plan import build_plan
from workflow_helpers import SMOKE_CORES, database_errors, expected_tracked_jobs, run_snakemake, tracked_runs

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "configs" / "smoke.yaml"
PAPER_COLUMNS = ["lambda_n", "lambda_a", "clean", "fgsm_eps4", "fgsm_eps8", "ifgsm10_eps4", "ifgsm10_eps8", "cw"]


def snakemake(workdir: Path, *args: str, overlays: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, overlays=overlays)


def planned_jobs(result: subprocess.CompletedProcess) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans."""
    jobs, rule = set(), None
    for line in result.stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            rule = m.group(1)
            jobs.add((rule, ""))
        elif rule and (m := re.match(r"^\s+wildcards: (.*)$", line)):
            jobs.discard((rule, ""))
            jobs.add((rule, m.group(1)))
    return jobs


# smoke_run: the session fixture in conftest.py (one smoke run shared with tests/test_tracking.py)


@pytest.mark.slow
@pytest.mark.parametrize("table,paper", [("table1_skin4_resnet18", "table1_skin_resnet18_ablation.csv"),
                                         ("table2_chest3_resnet18", "table2_chest_resnet18.csv"),
                                         ("table3_skin4_vgg16", "table3_skin_vgg16.csv")])
def test_smoke_tables_have_the_papers_shape(smoke_run, table, paper):
    ours = pd.read_csv(smoke_run / "results" / "tables" / f"{table}.csv")
    assert list(ours.columns) == PAPER_COLUMNS
    rows = yaml.safe_load(SMOKE.read_text())["tables"][table]["rows"]
    assert [(r["lambda_n"], r["lambda_a"]) for r in rows] == list(zip(ours["lambda_n"], ours["lambda_a"]))
    values = ours[PAPER_COLUMNS[2:]].to_numpy()
    assert ((values >= 0) & (values <= 100)).all()
    vs = pd.read_csv(smoke_run / "results" / "tables" / f"{table}_vs_paper.csv")
    assert list(vs.columns) == ["lambda_n", "lambda_a", "metric", "ours", "paper", "diff"]
    assert len(vs) == len(ours) * 6
    published = pd.read_csv(REPO / "paper" / paper)
    na = vs[(vs.lambda_n == 0) & (vs.lambda_a == 0) & (vs.metric == "clean")].iloc[0]
    assert na.paper == published[(published.lambda_n == 0) & (published.lambda_a == 0)]["clean"].iloc[0]
    assert na["diff"] == pytest.approx(na.ours - na.paper, abs=0.011)


@pytest.mark.slow
def test_smoke_run_records_attacks_and_evaluations(smoke_run):
    import json

    attack = json.loads((smoke_run / "results/metrics/attacks/skin4/ifgsm10_eps8.json").read_text())
    assert 0 <= attack["success_rate"] <= 1 and attack["mean_linf_255"] <= 8 + 1e-6
    evals = sorted((smoke_run / "results/metrics/eval").glob("*.json"))
    assert len(evals) == 3 + 2 + 2  # every table row of the smoke config, surrogates excluded
    assert not list(smoke_run.glob("models/*.ckpt"))  # finished trainings leave no partial checkpoint


@pytest.mark.slow
def test_nothing_to_do_after_a_complete_run(smoke_run):
    result = snakemake(smoke_run, "-n")
    assert result.returncode == 0
    assert planned_jobs(result) == set(), result.stdout


@pytest.mark.slow
def test_changing_one_lambda_reruns_only_that_model_and_downstream(smoke_run, tmp_path):
    smoke = yaml.safe_load(SMOKE.read_text())
    rows = smoke["tables"]["table1_skin4_resnet18"]["rows"]
    rows[1] = {"lambda_n": 0.5, "lambda_a": 0}  # was lambda_n = 1
    overlay = tmp_path / "one_lambda.yaml"
    overlay.write_text(yaml.safe_dump({"tables": {"table1_skin4_resnet18": {"rows": rows}}}))
    jobs = planned_jobs(snakemake(smoke_run, "-n", overlays=(overlay,)))
    assert jobs == {("train", "model=skin4_resnet18_ln0.5_la0_s0"),
                    ("evaluate", "model=skin4_resnet18_ln0.5_la0_s0"),
                    ("table", "table=table1_skin4_resnet18"),
                    ("stats", "table=table1_skin4_resnet18"),
                    ("figures", "table=table1_skin4_resnet18"),
                    ("all", "")}


@pytest.mark.slow
def test_changing_a_training_hyperparameter_reruns_every_training(smoke_run, tmp_path):
    overlay = tmp_path / "lr.yaml"
    overlay.write_text(yaml.safe_dump({"training": {"lr": 0.02}}))
    jobs = planned_jobs(snakemake(smoke_run, "-n", overlays=(overlay,)))
    trained = {w for r, w in jobs if r == "train"}
    assert len(trained) == 3 + 2 + 2 + 2 + 1  # every model, surrogates and Table 4's R+La classifier included
    assert not any(r == "prepare" for r, _ in jobs)


@pytest.mark.parametrize("overlay,message", [
    ({"training": {"epochz": 3}}, "unknown key 'training.epochz'"),
    ({"tables": {"table2_chest3_resnet18": {"rows": [{"lambda_n": -1, "lambda_a": 0}]}}},
     "'tables.table2_chest3_resnet18.rows[0].lambda_n' = -1 must be >= 0"),
])
def test_bad_params_fail_before_any_job(tmp_path, overlay, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(overlay))
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, overlays=(path,))
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (workdir / "data").exists() and not (workdir / "models").exists()


@pytest.mark.slow
def test_same_params_give_byte_identical_tables_and_metrics(smoke_run, tmp_path):
    """A second run from scratch, again 4 jobs at a time on 2 cores (so scheduled differently), writes the
    same bytes, and its MLflow store again holds every job's run once, with no database error."""
    result = run_snakemake(tmp_path, cores=SMOKE_CORES)
    assert result.returncode == 0, result.stderr[-4000:]
    # every output, not only the tables: models, prepared and adversarial sets are DVC outputs too
    files = sorted(p.relative_to(smoke_run) for folder in ("results", "models", "data")
                   for p in (smoke_run / folder).rglob("*") if p.is_file())
    assert len(files) >= 6 + 7 + 10 and any(f.suffix == ".pt" for f in files)
    for rel in files:
        assert (tmp_path / rel).read_bytes() == (smoke_run / rel).read_bytes(), rel

    plan = build_plan(validate_params(load_params(REPO / "params.yaml", SMOKE)))
    runs = [r for stage in tracked_runs(tmp_path, plan.datasets).values() for r in stage]
    assert len(runs) == expected_tracked_jobs(plan) and all(r.info.status == "FINISHED" for r in runs)
    names = [(r.info.experiment_id, r.info.run_name) for r in runs]
    assert len(set(names)) == len(names)  # no job logged twice
    assert database_errors(tmp_path, result.stderr) == []
