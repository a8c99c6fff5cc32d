"""One job graph: every stage is an entry module that reads its own keys by name, declares them, and whose
code inputs are exactly the modules it imports."""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import pytest

from pipeline_src import codedeps
from pipeline_src.config import ParamsError, load_params, validate_params
from pipeline_src.plan import build_plan, structure_hash
from pipeline_src.stages import _common as common
from workflow_helpers import REPO, SMOKE

STAGES = ("prepare", "train", "attack", "evaluate", "whitebox", "table", "whitebox_table", "stats", "figures",
          "attack_figure", "train_denoiser", "evaluate_denoised", "combined_table", "audit_craft", "audit_model",
          "audit_table")


def jobs_of(plan) -> dict[str, list[str]]:
    """stage -> the names of its jobs in ``plan``."""
    from pipeline_src.combined_plan import evaluation_jobs

    return {"prepare": list(plan.datasets), "train": list(plan.models), "attack": list(plan.attacks),
            "evaluate": [m.name for m in plan.evaluated_models()], "whitebox": [m.name for m in plan.whitebox_models()],
            "table": list(plan.tables), "whitebox_table": list(plan.whitebox_tables), "stats": list(plan.tables),
            "figures": list(plan.tables), "attack_figure": list(plan.datasets), "train_denoiser": list(plan.denoisers),
            "evaluate_denoised": list(evaluation_jobs(plan.combined)), "combined_table": list(plan.combined),
            "audit_craft": list(plan.audit_transfer), "audit_table": list(plan.audit_tables),
            "audit_model": [f"{m.name}/{part}" for m in plan.audit_models()
                            for part in ("transfer", "square", "autoattack", "unbounded")]}


@pytest.fixture(scope="module", params=["default", "smoke"])
def plan(request):
    raw = load_params(REPO / "params.yaml", *([SMOKE] if request.param == "smoke" else []))
    return raw, build_plan(validate_params(raw))


def test_every_stage_declares_keys_that_exist_and_suffice(plan):
    """DVC needs every declared key in params.yaml itself; a stage builds its configuration from its keys only
    (common.view), so a key it reads without declaring it fails here."""
    raw, p = plan
    for stage, names in jobs_of(p).items():
        module = importlib.import_module(f"pipeline_src.stages.{stage}")
        for name in names:
            keys = module.keys(p.cfg, p, name)
            for key in keys:
                common.lookup(raw, key)  # present in the file as written, not only as a schema default
            if hasattr(module, "config"):
                module.config(common.view(p.cfg, keys), p, name)


def test_every_torch_stage_reads_the_threads_snakemake_reserves_for_it(plan):
    """Snakemake reserves ``training.threads`` cores for each job of resources.TORCH_KINDS; a stage that does not
    read the key runs with torch's default, one thread per core, and oversubscribes the cores beside the other
    jobs (the evaluation stages did: 2-4x their CPU time in the smoke run)."""
    from pipeline_src.resources import TORCH_KINDS

    _, p = plan
    jobs = jobs_of(p)
    for stage in sorted(TORCH_KINDS):
        module = importlib.import_module(f"pipeline_src.stages.{stage}")
        for name in jobs[stage]:
            keys = module.keys(p.cfg, p, name)
            assert "training.threads" in keys or "training" in keys, (stage, name, keys)


def test_evaluation_runs_with_the_threads_it_is_given(tmp_path):
    import torch

    from pipeline_src.evaluate import evaluate_model
    from pipeline_src.io import save_torch
    from pipeline_src.models import ModelSpec, build_model

    spec = ModelSpec("resnet18", 2, 3, 32, "layer1")
    torch.manual_seed(0)
    save_torch({"model": build_model(spec).state_dict(), "spec": spec.to_dict(), "classes": ["a", "b"],
                "config": {"arch": "resnet18", "lambda_n": 0.0, "lambda_a": 0.0, "seed": 0}}, tmp_path / "m.pt")
    save_torch({"images": torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "labels": torch.tensor([0, 1]),
                "classes": ["a", "b"]}, tmp_path / "test.pt")
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            evaluate_model(tmp_path / "m.pt", tmp_path / "test.pt", {}, threads=threads)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_every_stage_has_a_readable_help():
    for stage in STAGES:
        out = subprocess.run([sys.executable, "-m", f"pipeline_src.stages.{stage}", "--help"], capture_output=True,
                             text=True, cwd=REPO)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("usage: python -m pipeline_src.stages.") and "--params" in out.stdout


def test_a_stage_refuses_a_name_the_parameters_lack(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    out = subprocess.run([sys.executable, "-m", "pipeline_src.stages.train", "--model", "skin4_resnet18_ln7_la0_s0",
                          "--train", "a", "--test", "b", "--out", "c", "--metrics", "d", "--curve", "e"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert "no model 'skin4_resnet18_ln7_la0_s0' in the parameters" in out.stderr
    assert not (tmp_path / "c").exists()


def test_code_inputs_follow_the_imports():
    train = codedeps.code_files("pipeline_src.stages.train")
    assert "pipeline_src/stages/train.py" in train and "pipeline_src/train.py" in train
    assert "pipeline_src/device.py" in train and "pipeline_src/losses.py" in train  # imported by train.py
    # what the job does not run is not its input: data sources, tracking, other stages, the CLI
    for absent in ("pipeline_src/data/synthetic.py", "pipeline_src/tracking.py", "pipeline_src/stages/attack.py",
                   "pipeline_src/cli.py", "pipeline_src/dvc_render.py"):
        assert absent not in train
    prepare = codedeps.code_files("pipeline_src.stages.prepare")
    assert "pipeline_src/data/synthetic.py" in prepare and "pipeline_src/train.py" not in prepare
    table = codedeps.code_files("pipeline_src.stages.table")
    assert "pipeline_src/tables.py" in table and "pipeline_src/device.py" not in table
    for stage in ("train", "attack", "evaluate", "whitebox", "train_denoiser", "evaluate_denoised"):
        assert "pipeline_src/device.py" in codedeps.code_files(f"pipeline_src.stages.{stage}"), stage


def test_a_module_that_never_changes_outputs_is_left_out(tmp_path):
    pkg = tmp_path / "pipeline_src"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "job.py").write_text("from pipeline_src import logs, work\n")
    (pkg / "work.py").write_text("def f():\n    from pipeline_src.deep import g\n")  # a lazy import counts
    (pkg / "deep.py").write_text("")
    (pkg / "logs.py").write_text("AFFECTS_OUTPUTS = False\nimport pipeline_src.only_for_logs\n")
    (pkg / "only_for_logs.py").write_text("")
    assert codedeps.closure("pipeline_src.job", tmp_path) == (
        "pipeline_src", "pipeline_src.deep", "pipeline_src.job", "pipeline_src.work")


def _new_process() -> None:
    """Forget what this process has scanned, as a new `snakemake` start would."""
    for cached in (codedeps.closure, codedeps._scanned, codedeps._scan_cache):
        cached.cache_clear()


def test_import_scans_are_kept_between_processes_and_keyed_by_the_files_text(tmp_path):
    pkg = tmp_path / "pipeline_src"
    pkg.mkdir()
    for name, text in {"__init__": "", "job": "from pipeline_src import work\n", "work": "", "ward": "",
                       "deep": ""}.items():
        (pkg / f"{name}.py").write_text(text)
    _new_process()
    assert codedeps.closure("pipeline_src.job", tmp_path) == ("pipeline_src", "pipeline_src.job", "pipeline_src.work")
    cache = tmp_path / codedeps.SCAN_CACHE
    entries = json.loads(cache.read_text())
    assert sorted(key.split(":")[0] for key in entries) == ["pipeline_src", "pipeline_src.job", "pipeline_src.work"]

    # a later process reads the scans instead of parsing (shown by a doctored entry)
    job_key = next(key for key in entries if key.startswith("pipeline_src.job:"))
    cache.write_text(json.dumps({**entries, job_key: {"imports": ["pipeline_src.deep"], "affects_outputs": True}}))
    _new_process()
    assert codedeps.closure("pipeline_src.job", tmp_path) == ("pipeline_src", "pipeline_src.deep", "pipeline_src.job")

    # new text of the same size and mtime is scanned again: the key is the text's hash, not the file's stat
    job = pkg / "job.py"
    stat = job.stat()
    job.write_text("from pipeline_src import ward\n")
    os.utime(job, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert job.stat().st_size == stat.st_size
    _new_process()
    assert codedeps.closure("pipeline_src.job", tmp_path) == ("pipeline_src", "pipeline_src.job", "pipeline_src.ward")

    # a malformed entry is scanned again, an unreadable cache is scanned over and written afresh
    ward_key = next(key for key in json.loads(cache.read_text()) if key.startswith("pipeline_src.job:"))
    cache.write_text(json.dumps({ward_key: {"imports": "pipeline_src.deep"}}))
    _new_process()
    assert codedeps.closure("pipeline_src.job", tmp_path) == ("pipeline_src", "pipeline_src.job", "pipeline_src.ward")
    cache.write_text("{not json")
    _new_process()
    assert codedeps.closure("pipeline_src.job", tmp_path) == ("pipeline_src", "pipeline_src.job", "pipeline_src.ward")
    assert len(json.loads(cache.read_text())) == 3
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_structure_hash_moves_with_rows_not_with_values():
    raw = load_params(REPO / "params.yaml")
    base = structure_hash(build_plan(validate_params(raw)))
    raw["training"]["epochs"] = 3
    raw["attacks"]["fgsm_eps4"]["eps"] = 3
    assert structure_hash(build_plan(validate_params(raw))) == base
    raw["tables"]["table2_chest3_resnet18"]["rows"].append({"lambda_n": 2, "lambda_a": 0})
    assert structure_hash(build_plan(validate_params(raw))) != base


@pytest.mark.parametrize("run", ["../up", "a b", "x;touch", ".hidden", "a..b"])
def test_run_names_are_safe_path_components(run):
    raw = load_params(REPO / "params.yaml")
    raw["run"] = run
    with pytest.raises(ParamsError, match="run"):
        validate_params(raw)


def test_snakemake_lint_is_clean():
    """Every rule runs in the Containerfile's image under apptainer (one `container:`), helpers live apart from
    rules (workflow/rules/paths.smk, common.smk), no absolute path."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert "Congratulations, your workflow is in a good condition!" in out.stdout + out.stderr, out.stdout[-3000:]
