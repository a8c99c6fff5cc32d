"""MLflow tracking: jobs never wait on the store (records in a spool, one flusher), every job of the smoke run
is one linked run under one parent per invocation, links name the exact runs by content, and an unreachable
store stops the workflow before any job."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from pipeline_src import tracking
from pipeline_src.config import TrainConfig, load_params, validate_params
from pipeline_src.plan import build_plan
from workflow_helpers import REPO, SMOKE, database_errors, hermetic_env, run_snakemake, tracked_runs

TRAIN_PARAMS = {f.name for f in fields(TrainConfig)}
EPOCH_METRICS = {"loss", "loss_c", "train_accuracy", "test_accuracy", "lr"}


@pytest.fixture(scope="module")
def plan(smoke_run):
    return build_plan(validate_params(load_params(smoke_run / "params.yaml")))


@pytest.fixture(scope="module")
def runs(smoke_run):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{smoke_run / 'mlflow.db'}"), tracked_runs(smoke_run)


@pytest.mark.slow
def test_one_finished_training_run_per_model_with_params_tags_and_epoch_histories(smoke_run, runs, plan):
    client, found = runs
    train = {r.data.tags["model"]: r for r in found["train"]}
    trained = {m.name for m in plan.run_models()}  # not the audit's ensemble members: `make audit` trains those
    assert len(found["train"]) == len(trained) and set(train) == trained
    epochs = plan.cfg["training"]["epochs"]
    for name, run in train.items():
        job = plan.models[name]
        assert run.info.status == "FINISHED" and run.data.tags["dataset"] == job.dataset
        assert TRAIN_PARAMS <= set(run.data.params)
        assert float(run.data.params["lambda_n"]) == job.lambda_n and run.data.params["arch"] == job.arch
        summary = json.loads((smoke_run / f"data/prepared/{job.dataset}/summary.json").read_text())
        tags = run.data.tags
        assert tags["data_sha256_train"] == summary["train"]["sha256"]
        assert tags["data_sha256_test"] == summary["test"]["sha256"]
        assert len(tags["git_commit"]) == 40 or tags["git_commit"] == "unknown"
        expected = EPOCH_METRICS | ({"loss_n"} if job.lambda_n > 0 else set()) | ({"loss_a"} if job.lambda_a > 0 else set())
        assert expected <= set(run.data.metrics), name
        for key in expected:
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == list(range(1, epochs + 1)), (name, key)
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"checkpoint", "resolved_config.json"} <= artifacts
        assert run.info.end_time - run.info.start_time > 0  # the job's own times, not the flusher's


@pytest.mark.slow
def test_links_name_the_exact_runs_that_wrote_each_input(smoke_run, runs, plan):
    client, found = runs
    by_id = {r.info.run_id: r for stage in found.values() for r in stage}
    sha = tracking.sha256_file
    for ev in found["evaluate"]:
        model = ev.data.tags["model"]
        train = by_id[ev.data.tags["train_run_id"]]
        assert train.data.tags["model"] == model
        assert train.data.tags["output.model.sha256"] == sha(smoke_run / f"models/{model}.pt")
        for attack in plan.attacks:
            link = by_id[ev.data.tags[f"attack_run_id.{attack}"]]
            assert link.data.tags["attack"] == attack and link.data.tags["dataset"] == plan.models[model].dataset
    for table in found["table"]:
        name = table.data.tags["table"]
        rows = {k: v for k, v in table.data.tags.items() if k.startswith("row_run_id.")}
        assert len(rows) == len(plan.tables[name])
        linked = {by_id[v].data.tags["model"] for v in rows.values()}
        assert linked == {m.name for m in plan.tables[name]}
        for run_id in rows.values():  # the very bytes the table read
            model = by_id[run_id].data.tags["model"]
            assert by_id[run_id].data.tags["output.evaluation.sha256"] == sha(smoke_run / f"results/metrics/eval/{model}.json")
    for combined in found["combined_table"]:
        assert all(v in by_id for k, v in combined.data.tags.items() if k.startswith("row_run_id."))


@pytest.mark.slow
def test_one_parent_per_invocation_and_no_database_error(smoke_run, runs):
    _, found = runs
    parents = found["parent"]
    assert len(parents) == 1 and parents[0].data.tags["pipeline.parent"] == "true"
    children = [r for stage, rs in found.items() if stage != "parent" for r in rs]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert database_errors(smoke_run, (smoke_run / "snakemake.stderr").read_text()) == []


@pytest.mark.parametrize("uri", ["http://127.0.0.1:9", "sqlite:////nonexistent-folder/mlflow.db"])
def test_unreachable_tracking_uri_fails_before_any_job_naming_it(tmp_path, uri):
    result = run_snakemake(tmp_path, "-n", env=hermetic_env(MLFLOW_TRACKING_URI=uri))
    assert result.returncode != 0
    assert uri in result.stdout + result.stderr
    assert not (tmp_path / "data").exists()


def test_jobs_write_records_and_the_flusher_logs_them_once(tmp_path, monkeypatch):
    """The job side writes a record (no mlflow import); flush logs it as a run, links by content, and removes it."""
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(tracking.DEFERRED_ENV, "1")
    monkeypatch.setenv(tracking.INVOCATION_ENV, "inv-1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(tracking.ROOT_ENV, str(tmp_path))
    out = tmp_path / "model.pt"
    out.write_bytes(b"weights")
    with tracking.job_run(True, "train", "m1", "proj/run", {"dataset": "d"}, {"lr": 0.1}) as rec:
        rec.log_epoch({"epoch": 1, "loss": 0.5})
        rec.log_epoch({"epoch": 2, "loss": 0.25})
        rec.output("model", out)
        rec.log_artifact(out, "checkpoint")
    (tmp_path / "new.pt").write_bytes(b"other")  # a rerun renames a new file into place (io.atomic_path):
    os.replace(tmp_path / "new.pt", out)           # the record's hard link keeps the bytes it describes
    with tracking.job_run(True, "evaluate", "m1", "proj/run", {"dataset": "d"}) as rec2:
        rec2.link("train_run_id", out)
    assert not (tmp_path / "mlflow.db").exists()  # deferred: nothing logged yet
    assert len(tracking.pending(tmp_path / tracking.SPOOL)) == 2
    assert tracking.flush(tmp_path / tracking.SPOOL) == 2
    assert tracking.pending(tmp_path / tracking.SPOOL) == []
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("proj/run")
    runs = {r.data.tags["stage"]: r for r in client.search_runs([exp.experiment_id]) if "stage" in r.data.tags}
    train = runs["train"]
    assert [m.value for m in client.get_metric_history(train.info.run_id, "loss")] == [0.5, 0.25]
    assert train.data.params == {"lr": "0.1"}
    local = client.download_artifacts(train.info.run_id, "checkpoint/model.pt", str(tmp_path / "dl"))
    assert Path(local).read_bytes() == b"weights"
    # the evaluation read bytes no run wrote: its link says so instead of guessing
    assert runs["evaluate"].data.tags["train_run_id"] == "unknown"
    parent = client.get_run(train.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["pipeline.invocation"] == "inv-1"


def test_a_job_under_dvc_logs_its_own_run_into_the_repository_store(tmp_path, monkeypatch):
    """Outside Snakemake (a DVC stage, a job run by hand) the job flushes itself; DVC_ROOT names the
    repository also for queued experiments that run in a temporary copy."""
    from mlflow.tracking import MlflowClient

    work, repo = tmp_path / "exp-tmp", tmp_path / "repo"
    work.mkdir()
    repo.mkdir()
    monkeypatch.chdir(work)
    for var in ("MLFLOW_TRACKING_URI", tracking.DEFERRED_ENV, tracking.ROOT_ENV):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DVC_ROOT", str(repo))
    assert tracking.tracking_uri() == f"sqlite:///{repo.resolve() / 'mlflow.db'}"
    with tracking.job_run(True, "table", "t1", "proj/default", {"dataset": "d"}) as rec:
        rec.log_metrics({"NA.clean": 80.0})
    client = MlflowClient(tracking_uri=tracking.tracking_uri())
    exp = client.get_experiment_by_name("proj/default")
    assert [r.data.tags["stage"] for r in client.search_runs([exp.experiment_id])] == ["table"]
    assert not (work / "mlflow.db").exists()


def test_a_failed_job_is_recorded_as_failed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(tracking.DEFERRED_ENV, "1")
    with pytest.raises(RuntimeError), tracking.job_run(True, "train", "m", "p/r", {}):
        raise RuntimeError("boom")
    (record,) = tracking.pending(tmp_path / tracking.SPOOL)
    assert json.loads((record / "record.json").read_text())["status"] == "FAILED"


def test_tracking_off_writes_no_record(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with tracking.job_run(False, "train", "m", "p/r", {}) as rec:
        rec.log_metrics({"a": 1.0})
        rec.log_artifact(tmp_path / "nothing", "x")  # a no-op: not even read
    assert not (tmp_path / ".tracking").exists()


def test_no_job_module_imports_mlflow():
    """Jobs pay no MLflow import: only the flusher (tracking.flush) and the store set-up load it."""
    code = ("import sys, runpy; sys.argv = ['x', '--help']\n"
            "import pipeline_src.stages.train, pipeline_src.stages.evaluate, pipeline_src.stages.table\n"
            "import pipeline_src.tracking\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'torchvision', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"


def test_sqlite_uris_resolve_to_files(tmp_path):
    assert tracking.sqlite_path("sqlite:///mlflow.db") == Path("mlflow.db")
    assert tracking.sqlite_path(f"sqlite:///{tmp_path}/x.db") == tmp_path / "x.db"
    assert tracking.sqlite_path("http://host") is None
    with pytest.raises(tracking.TrackingError, match="not a database file"):
        tracking.sqlite_path("sqlite://")


def test_uris_are_redacted_before_they_are_shown():
    assert tracking.redact("http://user:s3cret@host:5000/x") == "http://user:***@host:5000/x"
    assert tracking.redact("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


def test_a_training_logged_with_log_models_loads_back_and_reproduces_its_clean_accuracy(tmp_path, monkeypatch):
    """tracking.log_models: the flusher logs the job's checkpoint as an MLflow model and its splits as inputs;
    mlflow.pytorch.load_model of that model gives the checkpoint's accuracy on the test split."""
    import mlflow
    import torch
    from mlflow.tracking import MlflowClient

    from pipeline_src.checkpoints import load_checkpoint
    from pipeline_src.data.split import load_split
    from pipeline_src.evaluate import accuracy
    from pipeline_src.io import save_torch
    from pipeline_src.models import ModelSpec, build_model

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(tracking.DEFERRED_ENV, "1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv(tracking.ROOT_ENV, str(tmp_path))
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(24) % 3
    images = torch.randint(0, 256, (24, 3, 32, 32), generator=g, dtype=torch.uint8)
    for name in ("train", "test"):
        save_torch({"images": images, "labels": labels, "classes": ["a", "b", "c"]}, tmp_path / f"{name}.pt")
    spec = ModelSpec("resnet18", 3, 3, 32, "layer1")
    torch.manual_seed(0)
    save_torch({"model": build_model(spec).state_dict(), "spec": spec.to_dict(), "config": {},
                "classes": ["a", "b", "c"], "history": []}, tmp_path / "m.pt")
    with tracking.job_run(True, "train", "m", "proj/run", {"dataset": "skin4"}) as rec:
        rec.log_model(tmp_path / "m.pt", {"train": tmp_path / "train.pt", "test": tmp_path / "test.pt"})
    assert tracking.flush(tmp_path / tracking.SPOOL) == 1

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    (run,) = [r for r in client.search_runs([client.get_experiment_by_name("proj/run").experiment_id])
              if r.data.tags.get("stage") == "train"]
    assert "model_logging_error" not in run.data.tags
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"skin4/train", "skin4/test"}
    test = load_split(tmp_path / "test.pt")
    expected = accuracy(load_checkpoint(tmp_path / "m.pt").model, test.images, test.labels)
    mlflow.set_tracking_uri(uri)
    try:
        served = mlflow.pytorch.load_model(run.data.tags["model_uri"])
    finally:
        mlflow.set_tracking_uri(None)
    with torch.no_grad():
        got = (served(test.images.float() / 255).argmax(1) == test.labels).float().mean().item()
    assert got == pytest.approx(expected)
