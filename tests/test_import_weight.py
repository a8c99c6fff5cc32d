"""What a job's library modules import at module level: each heavy package only where it is used
(issue 14: a job's fixed cost). Each is imported in a fresh interpreter (a forked child of one), so nothing
imported by other tests counts."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

# (jsonschema is not on the list: every job validates its params.yaml, pipeline_src/stages/_common.py)
HEAVY = ["torchvision", "matplotlib", "pandas", "PIL", "pydicom", "mlflow", "scipy", "sympy"]


# One interpreter imports ``preload`` (checked to import none of the candidates), then forks a child per module:
# the same answer as a fresh interpreter per module, one preload for all (torch: seconds each).
FORKED = """
import json, os, sys, traceback
for p in PRELOAD: __import__(p)
out = {"preloaded": [h for h in CANDIDATES if h in sys.modules]}
for m in MODULES:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            __import__(m)
            os.write(w, json.dumps([h for h in CANDIDATES if h in sys.modules]).encode())
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    out[m] = json.loads(data) if status == 0 else f"importing {m} failed (traceback on stderr)"
print(json.dumps(out))
"""


def imported_by_each(modules: list[str], candidates: list[str], preload: tuple[str, ...] = ()) -> dict[str, list]:
    """For each module, the candidates in ``sys.modules`` once it is imported into a fresh interpreter that has
    imported only ``preload`` (modules every one of them imports anyway)."""
    code = f"PRELOAD = {list(preload)!r}\nCANDIDATES = {candidates!r}\nMODULES = {modules!r}\n{FORKED}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout)
    assert result.pop("preloaded") == [], f"{preload} itself imports a candidate: the forked check would be wrong"
    return result


MODEL_JOB_MODULES = ["pipeline_src.train", "pipeline_src.adversarial", "pipeline_src.evaluate", "pipeline_src.whitebox",
                     "pipeline_src.denoisers", "pipeline_src.checkpoints"]
TABLE_JOB_MODULES = ["pipeline_src.tables", "pipeline_src.stats", "pipeline_src.combined", "pipeline_src.io",
                     "pipeline_src.config", "pipeline_src.audit_tables", "pipeline_src.summary"]


@pytest.fixture(scope="module")
def model_job_imports() -> dict:
    return imported_by_each(MODEL_JOB_MODULES, HEAVY, preload=("torch",))


@pytest.fixture(scope="module")
def table_job_imports() -> dict:
    return imported_by_each(TABLE_JOB_MODULES, ["torch", "torchvision", "matplotlib"])


@pytest.mark.parametrize("module", MODEL_JOB_MODULES)
def test_model_jobs_import_no_torchvision_plotting_tables_or_tracking(model_job_imports, module):
    assert model_job_imports[module] == []


@pytest.mark.parametrize("module", TABLE_JOB_MODULES)
def test_table_jobs_import_no_torch(table_job_imports, module):
    assert table_job_imports[module] == []


def test_validating_params_imports_no_torch(repo):
    code = ("import sys\nfrom pipeline_src.config import load_params, validate_params\n"
            f"validate_params(load_params({str(repo / 'params.yaml')!r}))\n"
            "print(' '.join(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == []  # every job may validate its params: that must not cost an `import torch`
