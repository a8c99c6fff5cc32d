"""DVC: dvc.yaml is the Snakefile's job graph rendered (same jobs, same commands), a value change is plain
`dvc repro` (or `dvc exp run -S`), a structure change needs its one command, and metrics and plots are
what people compare. `dvc push`/`dvc pull` restore the prepared data."""
from __future__ import annotations

import ast
import csv
import hashlib
import io
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

from pipeline_src.dvc_render import render
from workflow_helpers import REPO, SMOKE, hermetic_env, make_clone, snakemake_in

Job = tuple[tuple[str, ...], frozenset[str], frozenset[str]]  # (command tokens, outputs, inputs)


def _dvc_jobs(dvc_yaml: str) -> set[Job]:
    jobs = set()
    for stage in yaml.safe_load(dvc_yaml)["stages"].values():
        outs = [next(iter(o)) if isinstance(o, dict) else o
                for key in ("outs", "metrics", "plots") for o in stage.get(key, [])]
        jobs.add((tuple(shlex.split(stage["cmd"])), frozenset(outs), frozenset(stage["deps"])))
    return jobs


def _snakemake_printed_jobs(root: Path) -> set[Job]:
    """Every job of a forced dry run, read from Snakemake's printed text (an independent path from the
    renderer, which asks Snakemake's API): command with the interpreter as `python`, outputs, inputs."""
    result = snakemake_in(root, "-n", "-p", "--forceall", "all")  # dvc.yaml: the jobs of `make run`
    assert result.returncode == 0, result.stderr[-3000:]
    jobs, current = set(), None
    for line in result.stdout.splitlines():
        if m := re.match(r"^(?:local)?rule (\w+):", line):
            current = {"rule": m.group(1), "input": "", "output": ""}
        elif current and (m := re.match(r"^\s+(input|output): (.*)$", line)):
            current[m.group(1)] = m.group(2)
        elif current and current["rule"] != "all" and line.startswith("Shell command: "):
            tokens = shlex.split(line.removeprefix("Shell command: "))
            assert tokens[0] == sys.executable, tokens[:2]
            tokens[0] = "python"  # Snakemake runs its own interpreter, dvc.yaml the venv's `python`
            files = lambda s: frozenset(p for p in s.split(", ") if p)  # noqa: E731
            jobs.add((tuple(tokens), files(current["output"]), files(current["input"])))
            current = None
    return jobs


@pytest.mark.heavy
def test_committed_dvc_yaml_is_the_rendered_one():
    assert (REPO / "dvc.yaml").read_text() == render(REPO), (
        "dvc.yaml is stale: run `python -m pipeline_src dvc-yaml` and commit it")


@pytest.mark.heavy
@pytest.mark.slow
def test_dvc_yaml_and_the_snakefile_run_the_same_jobs_with_the_same_commands(tmp_path):
    root = make_clone(tmp_path / "clone", SMOKE)
    printed = _snakemake_printed_jobs(root)
    rendered = _dvc_jobs(render(root))
    assert len(printed) > 40
    assert printed == rendered, (sorted(printed - rendered)[:2], sorted(rendered - printed)[:2])


def test_dvc_set_rewrites_the_parameter_file_without_breaking_it(tmp_path):
    """`dvc exp run -S key=value` rewrites params.yaml with DVC's round-trip YAML writer, which drops quotes and
    wraps long flow mappings: a quoted key with spaces in a long flow mapping came back as invalid YAML. The
    committed files are in the writer's own layout, so a -S edit changes exactly the one value."""
    from dvc.utils.serialize import modify_yaml

    copy = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", copy)  # DVC reads and writes params.yaml only
    before = copy.read_text()
    with modify_yaml(copy) as data:  # what `dvc exp run -S` calls
        data["attacks"]["fgsm_eps4"]["eps"] = 2
    after = copy.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    expected = yaml.safe_load(before)
    expected["attacks"]["fgsm_eps4"]["eps"] = 2
    assert yaml.safe_load(after) == expected
    assert len(before.splitlines()) == len(after.splitlines()) and len(changed) == 1, changed


def test_no_python_module_restates_the_graphs_paths():
    """The rules hold the output paths; a module may show one in its docstring, never use one."""
    pattern = re.compile(r"^(results|models|logs|data/(prepared|adversarial))/")
    found = []
    for path in sorted((REPO / "pipeline_src").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if pattern.match(node.value):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert found == []


# --------------------------------------------------------------------------- dvc on a small repository

def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = hermetic_env(DVC_NO_ANALYTICS="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, capture_output=True,
                            text=True, timeout=900, env=env)
    if check:
        assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout


def render_in(repo: Path) -> None:
    subprocess.run([sys.executable, "-m", "pipeline_src", "dvc-yaml"], cwd=repo, check=True, timeout=300,
                   capture_output=True, env=hermetic_env())


def stages_run(result: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"Running stage '(?:dvc\.yaml:)?([^']+)'", result.stdout + result.stderr))


def stale(repo: Path) -> set[str]:
    return {name.removeprefix("dvc.yaml:") for name in json.loads(dvc(repo, "status", "--json").stdout)}


def set_params(repo: Path, change) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    change(params)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def hashes(folder: Path) -> dict[Path, str]:
    """sha256 of every file DVC tracks under ``folder`` (not the .gitignore files it writes for git)."""
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and p.name != ".gitignore"}


TABLE = "table1_skin4_resnet18"
SMALL = {  # DVC runs its stages one at a time: one table of two rows on one dataset, two attacks
    "datasets": {"skin4": {"synthetic_counts": {"MEL": 10, "NV": 14, "BCC": 8, "BKL": 8},
                           "caps": {"NV": 10}, "split": {"test_fraction": 0.25}}},
    "training": {"epochs": 1, "batch_size": 16},
    "whitebox": {"enabled": False},
    # A DVC stage logs its own MLflow run (no workflow flusher): 3 s a stage, a third of this module's time.
    # No stage reads `tracking`, so the queued experiment turns it on without re-running anything else.
    "tracking": {"enabled": False},
}


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory) -> Path:
    """A fresh clone in miniature, run once with `dvc repro` and committed (as a user commits results)."""
    from workflow_helpers import merged_params

    repo = tmp_path_factory.mktemp("dvc") / "repo"
    make_clone(repo, SMOKE, SMALL)
    params = merged_params(SMOKE, SMALL)
    table = params["tables"][TABLE]
    params["tables"] = {TABLE: {**table, "rows": [table["rows"][0], table["rows"][-1]]}}  # NA, (1, 10)
    params["datasets"] = {"skin4": params["datasets"]["skin4"]}
    params["attacks"] = {a: params["attacks"][a] for a in ("fgsm_eps4", "ifgsm10_eps4")}
    params["combined_tables"] = {}
    params["whitebox"] = {k: v for k, v in params["whitebox"].items() if k != "tables"}  # off, and no table named
    params["audit"] = {k: v for k, v in params["audit"].items() if k != "tables"} | {"enabled": False}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(repo, "init", "-q")  # the clone holds the repository's .dvc/ (config, .gitignore): already a DVC project
    render_in(repo)
    result = dvc(repo, "repro")
    assert f"table_{TABLE}" in stages_run(result)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first run")
    return repo


@pytest.mark.heavy
@pytest.mark.slow
def test_dvc_repro_builds_the_table_metrics_and_plots_then_nothing_is_stale(dvc_repo):
    assert (dvc_repo / "results" / "tables" / f"{TABLE}.csv").is_file()
    assert stale(dvc_repo) == set()
    shown = json.loads(dvc(dvc_repo, "metrics", "show", "--json").stdout)
    metrics = next(iter(shown.values()))["data"][f"results/metrics/tables/{TABLE}.json"]["data"]
    assert set(metrics) == {"NA", "ln1_la10"}
    for row in metrics.values():  # accuracies and test-set size, no hyperparameter
        assert set(row) == {"clean", "fgsm_eps4", "ifgsm10_eps4", "mean_adversarial", "n_test"}
    shown = json.loads(dvc(dvc_repo, "plots", "show", "--json").stdout)
    plots = shown.get("data", shown)  # {"data": {plot id: [...]}, ...}
    names = " ".join(plots)
    assert "results/plots/train" in names and f"{TABLE}_accuracy_vs_eps.csv" in names


@pytest.mark.heavy
@pytest.mark.slow
def test_a_value_change_is_plain_dvc_repro_and_reruns_only_what_reads_it(dvc_repo):
    set_params(dvc_repo, lambda p: p["training"].update(epochs=2))
    expected_train = {"train_skin4_resnet18_ln0_la0_s0", "train_skin4_resnet18_ln1_la10_s0",
                      "train_skin4_surrogate_resnet18_s1000"}
    planned = stale(dvc_repo)
    assert expected_train <= planned and not any(s.startswith("prepare") for s in planned)
    ran = stages_run(dvc(dvc_repo, "repro"))
    assert expected_train <= ran and not any(s.startswith("prepare") for s in ran)
    assert ran == planned | {s for s in ran if s.startswith(("evaluate", "attack", "table", "stats", "figures"))}
    assert stale(dvc_repo) == set()
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-qm", "two epochs")
    diff = json.loads(dvc(dvc_repo, "metrics", "diff", "HEAD~1", "--json").stdout)
    assert any("clean" in key for key in diff.get(f"results/metrics/tables/{TABLE}.json", {}))
    plots = json.loads(dvc(dvc_repo, "plots", "diff", "HEAD~1", "--json").stdout)
    assert plots  # both revisions' curves


@pytest.mark.heavy
@pytest.mark.slow
def test_a_new_row_needs_the_one_render_command_then_reruns_only_that_model_and_its_table(dvc_repo):
    set_params(dvc_repo, lambda p: p["tables"][TABLE]["rows"].__setitem__(1, {"lambda_n": 0.5, "lambda_a": 0}))
    before = dvc(dvc_repo, "repro", check=False)  # dvc.yaml still describes the old rows: refused, named
    assert before.returncode != 0 and "python -m pipeline_src dvc-yaml" in before.stdout + before.stderr
    assert not any(s.startswith("train") for s in stages_run(before))
    render_in(dvc_repo)
    model = "skin4_resnet18_ln0p5_la0_s0"  # skin4_resnet18_ln0.5_la0_s0: stage names have no dots
    expected = {f"train_{model}", f"evaluate_{model}", f"table_{TABLE}", f"stats_{TABLE}", f"figures_{TABLE}"}
    assert stale(dvc_repo) == expected
    assert stages_run(dvc(dvc_repo, "repro")) == expected
    assert "\n0.5,0," in (dvc_repo / "results" / "tables" / f"{TABLE}.csv").read_text()
    git(dvc_repo, "add", "-A")
    git(dvc_repo, "commit", "-qm", "row (0.5, 0)")


@pytest.mark.heavy
@pytest.mark.slow
def test_a_queued_experiment_runs_and_shows_its_metrics_and_changed_params(dvc_repo):
    """`dvc exp run --queue -S ...`, `--run-all`: the experiment shows up beside the workspace with the table's
    headline metrics and only the parameters that differ; its MLflow runs land in the repository's store, not
    in DVC's temporary workspace."""
    dvc(dvc_repo, "exp", "run", "--queue", "-S", "attacks.fgsm_eps4.eps=2", "-S", "tracking.enabled=true")
    dvc(dvc_repo, "exp", "run", "--run-all")
    changed = dvc(dvc_repo, "exp", "show", "--only-changed", "--csv").stdout
    columns, *rows = [r for r in csv.reader(io.StringIO(changed)) if r]  # values may hold commas: real CSV
    assert "attacks.fgsm_eps4.eps" in columns and "training.lr" not in columns  # only what differs
    assert {"2", "4"} <= {r[columns.index("attacks.fgsm_eps4.eps")] for r in rows}  # the experiment, the workspace
    # the experiment with the tables' headline metrics (a metric the experiment left unchanged, as NA's mean can
    # be on the smoke set's few images, is left out of --only-changed: read the full table)
    shown = dvc(dvc_repo, "exp", "show", "--csv").stdout
    columns, *rows = [r for r in csv.reader(io.StringIO(shown)) if r]
    na = [i for i, c in enumerate(columns) if c.endswith("NA.mean_adversarial")]
    by_eps = {r[columns.index("attacks.fgsm_eps4.eps")]: r for r in rows}
    assert na and "2" in by_eps and all(by_eps["2"][i] for i in na)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{dvc_repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("xue2019-denoising-cnn/default")
    attacks = client.search_runs([exp.experiment_id], filter_string="tags.stage = 'attack'", max_results=100)
    assert {float(r.data.params["eps"]) for r in attacks if "eps" in r.data.params} == {2.0}  # the experiment's
    assert not list(dvc_repo.glob(".dvc/tmp/exps/*/mlflow.db"))


@pytest.mark.heavy
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
