"""The smoke config through Snakemake end to end, then what a change of parameters, code or configuration
re-runs, and that a dry run plans exactly what the real run then executes."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_src.config import load_params, validate_params
from pipeline_src.plan import build_plan
from workflow_helpers import (REPO, SMOKE, SMOKE_CORES, executed_total, expected_tracked_jobs, file_hashes,
                              hermetic_env, make_clone, planned_jobs, planned_total, run_snakemake, snakemake_in,
                              start_mlflow_server, stop_mlflow_server, tracked_files, tracked_runs)

PAPER_COLUMNS = ["lambda_n", "lambda_a", "clean", "fgsm_eps4", "fgsm_eps8", "ifgsm10_eps4", "ifgsm10_eps8", "cw"]


@contextlib.contextmanager
def edited(path: Path, change) -> Iterator[None]:
    """Change a file of a finished run for one block, then put back its bytes AND its mtime (Snakemake
    compares mtimes: a restored file must not look newer than the outputs made from it)."""
    text, stat = path.read_text(), path.stat()
    try:
        path.write_text(change(text))
        yield
    finally:
        path.write_text(text)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def params_change(**sections) -> Callable[[str], str]:
    """An edit of params.yaml: deep-merge ``sections`` into it."""
    from pipeline_src.config import deep_merge

    return lambda text: yaml.safe_dump(deep_merge(yaml.safe_load(text), sections), sort_keys=False)


# smoke_run: the session fixture in conftest.py (a clone whose params.yaml is the smoke config, already run)


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
    # the flat metrics DVC shows: every row, clean and each attack as in the table, their mean, n_test
    metrics = json.loads((smoke_run / "results" / "metrics" / "tables" / f"{table}.json").read_text())
    assert list(metrics) == ["NA" if (r["lambda_n"], r["lambda_a"]) == (0, 0)
                             else f"ln{r['lambda_n']}_la{r['lambda_a']}" for r in rows]
    for (_, row), values in zip(ours.iterrows(), metrics.values()):
        assert values["clean"] == pytest.approx(row["clean"], abs=0.005)  # the CSV has 2 decimals
        attacks = PAPER_COLUMNS[3:]
        assert values["mean_adversarial"] == pytest.approx(sum(row[a] for a in attacks) / len(attacks), abs=0.005)
        assert values["n_test"] > 0 and not {"lr", "epochs", "lambda_n"} & set(values)


@pytest.mark.slow
def test_smoke_run_records_attacks_and_evaluations(smoke_run):
    attack = json.loads((smoke_run / "results/metrics/attacks/skin4/ifgsm10_eps8.json").read_text())
    assert 0 <= attack["success_rate"] <= 1 and attack["mean_linf_255"] <= 8 + 1e-6
    evals = sorted((smoke_run / "results/metrics/eval").glob("*.json"))
    assert len(evals) == 3 + 2 + 2  # every table row of the smoke config, surrogates excluded
    assert not list(smoke_run.glob("models/*.ckpt"))  # finished trainings leave no partial checkpoint
    curve = (smoke_run / "results/plots/train/skin4_resnet18_ln1_la10_s0.csv").read_text().splitlines()
    assert curve[0] == "epoch,lr,loss,train_accuracy,test_accuracy" and len(curve) == 1 + 1  # one epoch


@pytest.mark.slow
def test_nothing_to_do_after_a_complete_run(smoke_run):
    result = snakemake_in(smoke_run, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == set(), result.stdout


@pytest.mark.slow
def test_changing_one_lambda_reruns_only_that_model_and_downstream(smoke_run):
    def change(text):
        params = yaml.safe_load(text)
        params["tables"]["table1_skin4_resnet18"]["rows"][1] = {"lambda_n": 0.5, "lambda_a": 0}  # was 1
        return yaml.safe_dump(params, sort_keys=False)

    with edited(smoke_run / "params.yaml", change):
        jobs = planned_jobs(snakemake_in(smoke_run, "-n"))
    assert jobs == {("train", "model=skin4_resnet18_ln0.5_la0_s0"),
                    ("evaluate", "model=skin4_resnet18_ln0.5_la0_s0"),
                    ("table", "table=table1_skin4_resnet18"),
                    ("stats", "table=table1_skin4_resnet18"),
                    ("figures", "table=table1_skin4_resnet18"),
                    ("all", "")}


@pytest.mark.slow
def test_changing_a_training_hyperparameter_reruns_every_training(smoke_run):
    with edited(smoke_run / "params.yaml", params_change(training={"lr": 0.02})):
        jobs = planned_jobs(snakemake_in(smoke_run, "-n"))
    trained = {w for r, w in jobs if r == "train"}
    assert len(trained) == 3 + 2 + 2 + 2 + 1  # every model, surrogates and Table 4's R+La classifier included
    assert not any(r == "prepare" for r, _ in jobs)


@pytest.mark.slow
def test_a_value_no_job_reads_reruns_nothing(smoke_run):
    """Tracking and resources never change a result: switching them re-runs no job (params trigger)."""
    with edited(smoke_run / "params.yaml", params_change(tracking={"enabled": False},
                                                          resources={"train": {"mem_mb": 2500}})):
        assert planned_jobs(snakemake_in(smoke_run, "-n")) == set()


@pytest.mark.slow
@pytest.mark.parametrize("module,expected", [
    # one stage's entry module: its jobs and what depends on them, nothing else
    ("pipeline_src/stages/whitebox.py", {"whitebox", "whitebox_table", "all"}),
    ("pipeline_src/stages/stats.py", {"stats", "figures", "all"}),
    # a library every torch job imports: those jobs and everything after them, not prepare
    ("pipeline_src/device.py", {"train", "attack", "evaluate", "whitebox", "train_denoiser",
                                "evaluate_denoised_table4_skin4_combined", "table", "stats", "figures",
                                "attack_figure", "combined_table", "whitebox_table", "all"}),
    # the MLflow side never changes an output: editing it re-runs nothing
    ("pipeline_src/tracking.py", set()),
])
def test_editing_a_module_reruns_exactly_the_jobs_that_import_it(smoke_run, module, expected):
    with edited(smoke_run / module, lambda text: text + "\n# an edit\n"):
        jobs = planned_jobs(snakemake_in(smoke_run, "-n"))
    assert {rule for rule, _ in jobs} == expected


@pytest.mark.slow
def test_an_overlay_that_keeps_the_default_run_name_is_refused(smoke_run, tmp_path):
    overlay = tmp_path / "lr.yaml"
    overlay.write_text(yaml.safe_dump({"training": {"lr": 0.02}}))
    result = snakemake_in(smoke_run, "-n", overlays=(overlay,))
    assert result.returncode != 0
    assert "keep its run name 'default'" in result.stdout + result.stderr
    assert "run: <name>" in result.stdout + result.stderr


@pytest.mark.heavy
@pytest.mark.slow
def test_a_named_run_writes_only_its_own_tree_and_its_dry_run_is_honest(smoke_run, tmp_path):
    """An overlay with its own run name, after the default run: its dry run counts the jobs the real run then
    executes, every default output keeps its bytes, and its MLflow runs land in their own experiment.
    The overlay also lets the NA ResNet18 craft the attacks (surrogate.source: na_model, the paper's attacker):
    the attack jobs read the NA model, and its I-FGSM accuracy equals its white-box I-FGSM accuracy."""
    na = "chest3_resnet18_ln0_la0_s0"
    overlay = tmp_path / "na_attacker.yaml"  # merged over the clone's params.yaml (the smoke config)
    overlay.write_text(yaml.safe_dump({"run": "na_attacker", "surrogate": {"source": "na_model"},
                                       "whitebox": {"max_images": 0}, "audit": {"enabled": False}}))
    # Table 2 and its NA model's white-box record, not the whole run: the chest3 third of a smoke run's jobs
    targets = ("results/tables/table2_chest3_resnet18.csv", f"results/metrics/whitebox/{na}.json")
    before = file_hashes(smoke_run)
    dry = snakemake_in(smoke_run, "-n", *targets, overlays=(overlay,))
    assert dry.returncode == 0, dry.stderr[-3000:]
    # each attack job's input: its own dataset's NA ResNet18
    attack_inputs = [block.split("\n")[1] for block in dry.stdout.split("rule attack:")[1:]]
    assert attack_inputs and all(re.search(r"models/(\w+)_resnet18_ln0_la0_s0\.pt, data/prepared/\1/test\.pt", line)
                                 for line in attack_inputs), attack_inputs
    real = snakemake_in(smoke_run, *targets, overlays=(overlay,))
    assert real.returncode == 0, real.stderr[-3000:]
    assert planned_total(dry) == executed_total(real) > 5
    assert file_hashes(smoke_run) == before  # the default run's data, models and results untouched
    tree = smoke_run / "runs" / "na_attacker"
    assert (tree / "results" / "tables" / "table2_chest3_resnet18.csv").is_file()
    assert (tree / "params.yaml").read_text().startswith("# Written by the Snakefile: the parameters of run na_attacker")
    assert not (tree / "models" / "chest3_surrogate_resnet18_s1000.pt").exists()  # no independent surrogate
    assert set(tracked_runs(smoke_run, "na_attacker")) >= {"train", "attack", "evaluate", "table", "parent"}
    # crafted on the NA model itself: its transferred I-FGSM is its white-box I-FGSM, image for image
    evaluation = json.loads((tree / "results" / "metrics" / "eval" / f"{na}.json").read_text())
    whitebox = json.loads((tree / "results" / "metrics" / "whitebox" / f"{na}.json").read_text())
    assert whitebox["test_indices"] == list(range(evaluation["n_test"]))  # every image (max_images 0)
    assert evaluation["correct"]["ifgsm10_eps4"] == whitebox["correct"]["ifgsm10_eps4"]


@pytest.mark.heavy
@pytest.mark.slow
def test_after_a_configuration_switch_the_dry_run_counts_what_runs(smoke_run, tmp_path):
    """The store's set-up used to be a job that hid the rest of the graph from `-n` after a switch."""
    root = tmp_path / "copy"
    shutil.copytree(smoke_run, root, symlinks=True)  # keeps mtimes and .snakemake's records
    (root / "params.yaml").write_text(params_change(whitebox={"max_images": 6}, audit={"max_images": 6},
                                                         tracking={"enabled": False})(
        (root / "params.yaml").read_text()))
    dry = snakemake_in(root, "-n")
    real = snakemake_in(root)
    assert real.returncode == 0, real.stderr[-3000:]
    assert planned_total(dry) == executed_total(real) == 2 + 1 + 1  # 2 white-box jobs, their table, all


@pytest.mark.heavy
@pytest.mark.slow
def test_same_params_give_the_same_bytes_in_a_hostile_place_and_no_password_leaks(smoke_run, tmp_path):
    """A second run from scratch, in a clone whose path holds a space and a `$` (every path and the interpreter
    must be quoted), 4 jobs at a time on 2 cores (so scheduled differently), logging to a live `mlflow server`
    on 127.0.0.1 through a URI with a user and password: the same bytes as the smoke run; every job's run
    once, under one parent; the password in no file, printed line, Snakemake record or MLflow param or tag."""
    from mlflow.tracking import MlflowClient

    password = "pa55-not-in-any-file"
    root = make_clone(tmp_path / "a clone with $HOME and spaces", SMOKE)
    server, url = start_mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path)
    try:
        uri = url.replace("http://", f"http://alice:{password}@")
        result = snakemake_in(root, cores=SMOKE_CORES, env=hermetic_env(MLFLOW_TRACKING_URI=uri))
        assert result.returncode == 0, result.stderr[-4000:]
        first, second = file_hashes(smoke_run), file_hashes(root)
        assert len(first) >= 6 + 7 + 10 and any(f.endswith(".pt") for f in first)
        assert second == first

        plan = build_plan(validate_params(load_params(root / "params.yaml")))
        client = MlflowClient(tracking_uri=url)
        exp = client.get_experiment_by_name("xue2019-denoising-cnn/default")
        runs = client.search_runs([exp.experiment_id], max_results=10000)
        parents = [r for r in runs if r.data.tags.get("pipeline.parent") == "true"]
        jobs = [r for r in runs if "stage" in r.data.tags]
        assert len(jobs) == expected_tracked_jobs(plan) and all(r.info.status == "FINISHED" for r in jobs)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert {r.data.tags["mlflow.parentRunId"] for r in jobs} == {parents[0].info.run_id}
        names = [r.info.run_name for r in jobs]
        assert len(set(names)) == len(names)  # no job logged twice
        for run in runs:
            assert password not in repr(run.data.params) + repr(run.data.tags), run.info.run_name
    finally:
        stop_mlflow_server(server)
    assert password not in result.stdout + result.stderr
    sources = set(tracked_files())  # the clone's own code and tests (this one spells the password)
    leaked = [str(p.relative_to(root)) for p in root.rglob("*")
              if p.is_file() and str(p.relative_to(root)) not in sources and password.encode() in p.read_bytes()]
    assert leaked == []  # logs, .snakemake metadata, outputs, the spool
    assert not list((root / ".tracking" / "spool").glob("*/record.json"))  # every record logged
