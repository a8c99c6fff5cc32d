"""MLflow tracking: every training, attack, evaluation and table of the smoke run is a linked run;
parallel jobs lose nothing; an unreachable store stops the workflow before any job."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from pipeline_src import tracking
from pipeline_src.config import TrainConfig, load_params, validate_params
from pipeline_src.plan import build_plan
from workflow_helpers import REPO, SMOKE, hermetic_env, run_snakemake

TRAIN_PARAMS = {f.name for f in fields(TrainConfig)}
EPOCH_METRICS = {"loss", "loss_c", "train_accuracy", "test_accuracy", "lr"}


@pytest.fixture(scope="module")
def plan():
    return build_plan(validate_params(load_params(REPO / "params.yaml", SMOKE)))


@pytest.fixture(scope="module")
def runs(smoke_run, plan):
    """{stage: [Run]} of the smoke run's store, all experiments."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{smoke_run / 'mlflow.db'}")
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    assert set(plan.datasets) <= set(experiments)
    found: dict[str, list] = {}
    for run in client.search_runs([experiments[d] for d in plan.datasets], max_results=1000):
        found.setdefault(run.data.tags["stage"], []).append(run)
    return client, found


@pytest.mark.slow
def test_one_finished_training_run_per_model_with_params_tags_and_epoch_histories(smoke_run, runs, plan):
    client, found = runs
    train = {r.data.tags["model"]: r for r in found["train"]}
    assert len(found["train"]) == len(plan.models) and set(train) == set(plan.models)
    epochs = plan.cfg["training"]["epochs"]
    for name, run in train.items():
        job = plan.models[name]
        assert run.info.status == "FINISHED"
        assert run.info.experiment_id == client.get_experiment_by_name(job.dataset).experiment_id
        assert TRAIN_PARAMS <= set(run.data.params)
        assert float(run.data.params["lambda_n"]) == job.lambda_n and run.data.params["arch"] == job.arch
        summary = json.loads((smoke_run / f"data/prepared/{job.dataset}/summary.json").read_text())
        tags = run.data.tags
        assert tags["data_sha256_train"] == summary["train"]["sha256"]
        assert tags["data_sha256_test"] == summary["test"]["sha256"]
        assert len(tags["git_commit"]) == 40 and tags["git_dirty"] in ("true", "false")
        expected = EPOCH_METRICS | ({"loss_n"} if job.lambda_n > 0 else set()) | ({"loss_a"} if job.lambda_a > 0 else set())
        assert expected <= set(run.data.metrics), name
        for key in expected:
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == list(range(1, epochs + 1)), (name, key)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"checkpoint", "resolved_config.json"} <= artifacts
        assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")] == [f"checkpoint/{name}.pt"]


@pytest.mark.slow
def test_attack_evaluation_and_table_runs_are_linked(runs, plan):
    client, found = runs
    train_ids = {r.data.tags["model"]: r.info.run_id for r in found["train"]}
    attacks = found["attack"]
    assert len(attacks) == len(plan.datasets) * len(plan.attacks)
    attack_ids = {(r.data.tags["dataset"], r.data.tags["attack"]): r.info.run_id for r in attacks}
    for run in attacks:
        assert {"success_rate", "mean_linf_255", "mean_l2_uint8"} <= set(run.data.metrics)
        assert {"method", "attack", "seed"} <= set(run.data.params)
        surrogate = plan.surrogate(run.data.tags["dataset"]).name
        assert run.data.tags["surrogate"] == surrogate and run.data.tags["surrogate_run_id"] == train_ids[surrogate]

    evals = {r.data.tags["model"]: r for r in found["evaluate"]}
    assert len(found["evaluate"]) == len(plan.evaluated_models()) and set(evals) == {m.name for m in plan.evaluated_models()}
    for name, run in evals.items():
        assert set(run.data.metrics) == {f"accuracy_{c}" for c in ("clean", *plan.attacks)}
        assert run.data.tags["train_run_id"] == train_ids[name]
        dataset = run.data.tags["dataset"]
        assert all(run.data.tags[f"attack_run_id.{a}"] == attack_ids[(dataset, a)] for a in plan.attacks)

    tables = {r.data.tags["table"]: r for r in found["table"]}
    assert set(tables) == set(plan.tables)
    for table, run in tables.items():
        rows = [m.name for m in plan.tables[table]]
        assert run.data.tags["models"].split(",") == rows
        assert all(run.data.tags[f"eval_run_id.{m}"] == evals[m].info.run_id for m in rows)  # row -> its runs
        paths = {a.path for a in client.list_artifacts(run.info.run_id, "tables")}
        assert paths == {f"tables/{table}.csv", f"tables/{table}_vs_paper.csv"}


@pytest.mark.slow
def test_parallel_run_loses_no_run_and_logs_no_database_error(smoke_run, runs, plan):
    _, found = runs
    jobs = len(plan.models) + len(plan.datasets) * len(plan.attacks) + len(plan.evaluated_models()) + len(plan.tables)
    jobs += len(plan.whitebox_models()) + len(plan.whitebox_tables)  # beyond the paper: tests/test_whitebox.py
    all_runs = [r for stage in found.values() for r in stage]
    assert len(all_runs) == jobs and all(r.info.status == "FINISHED" for r in all_runs)
    logs = [smoke_run / "snakemake.stderr", *sorted((smoke_run / "logs").rglob("*.log"))]
    for path in logs:
        text = path.read_text().lower()
        assert "database is locked" not in text and "operationalerror" not in text, path


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9", "sqlite:///{tmp}/missing/mlflow.db"])
def test_unreachable_tracking_uri_fails_before_any_job_naming_it(tmp_path, uri):
    uri = uri.format(tmp=tmp_path)
    result = run_snakemake(tmp_path, env=hermetic_env(MLFLOW_TRACKING_URI=uri))
    assert result.returncode != 0
    assert f"MLflow tracking URI '{uri}' is unreachable" in result.stdout + result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "models").exists()


def test_tracking_init_fails_fast_on_an_unreachable_server(tmp_path):
    cmd = [sys.executable, "-m", "pipeline_src", "tracking-init", "--experiments", "skin4", "--out", "m.json"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env=hermetic_env(MLFLOW_TRACKING_URI="http://127.0.0.1:9"))
    assert result.returncode == 2 and "'http://127.0.0.1:9'" in result.stderr
    assert not (tmp_path / "m.json").exists()


def test_tracking_off_keeps_mlflow_out_of_every_command(tmp_path):
    overlay = tmp_path / "off.yaml"
    overlay.write_text(yaml.safe_dump({"tracking": {"enabled": False}}))
    result = run_snakemake(tmp_path, "-n", "-p", overlays=(overlay,))
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if " -m pipeline_src " in line]
    assert commands and not any("--tracking" in c for c in commands)
    assert any("tracking-init" in c and "--disabled" in c for c in commands)


def test_store_creation_is_idempotent_and_runs_log_epochs_live(tmp_path, monkeypatch):
    """ensure_store twice (as two racing jobs would), then a run fed by train_model's on_epoch callback."""
    import dataclasses

    from mlflow.tracking import MlflowClient
    from test_train import tiny_split

    from pipeline_src.train import train_model

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    first = tracking.ensure_store(uri, ["skin4", "chest3"])
    assert tracking.ensure_store(uri, ["skin4", "chest3"]) == first
    cfg = validate_params(load_params(REPO / "params.yaml"))
    train_cfg = dataclasses.replace(TrainConfig.from_params(cfg, "resnet18", 1.0, 0.0, 0), epochs=3, batch_size=8)
    with tracking.start_run(True, "skin4", "tiny", {"stage": "train", "model": "tiny"}, {"epochs": 3}) as run:
        train_model(train_cfg, tiny_split(16, 0), tiny_split(8, 1), tmp_path / "m.pt",
                    on_epoch=run.log_epoch)
    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(run.run_id, "loss_n")
    assert [m.step for m in history] == [1, 2, 3]
    assert client.get_run(run.run_id).info.status == "FINISHED"
    assert tracking.find_run(client, first["skin4"], stage="train", model="tiny") == run.run_id


def test_sqlite_uris_resolve_to_files(tmp_path):
    assert tracking.sqlite_path("sqlite:///mlflow.db") == Path("mlflow.db")
    assert tracking.sqlite_path(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db"
    assert tracking.sqlite_path("http://127.0.0.1:5000") is None
    with pytest.raises(tracking.TrackingError, match="sqlite:///<file>.db"):
        tracking.sqlite_path("sqlite://")
