"""What a job's library modules import at module level: each heavy package only where it is used
(issue 14: a job's fixed cost). Run in a fresh interpreter, so nothing imported by other tests counts."""
from __future__ import annotations

import subprocess
import sys

import pytest

# (jsonschema is not on the list: every job validates its params.yaml, pipeline_src/stages/_common.py)
HEAVY = ["torchvision", "matplotlib", "pandas", "PIL", "pydicom", "mlflow", "scipy", "sympy"]


def imported_after(modules: list[str], candidates: list[str]) -> list[str]:
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            f"print(' '.join(h for h in {candidates!r} if h in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return out.split()


@pytest.mark.parametrize("module", ["pipeline_src.train", "pipeline_src.adversarial", "pipeline_src.evaluate",
                                    "pipeline_src.whitebox", "pipeline_src.denoisers", "pipeline_src.checkpoints"])
def test_model_jobs_import_no_torchvision_plotting_tables_or_tracking(module):
    assert imported_after([module], HEAVY) == []


@pytest.mark.parametrize("module", ["pipeline_src.tables", "pipeline_src.stats", "pipeline_src.combined",
                                    "pipeline_src.io", "pipeline_src.config"])
def test_table_jobs_import_no_torch(module):
    assert imported_after([module], ["torch", "torchvision", "matplotlib"]) == []


def test_validating_params_imports_no_torch(repo):
    code = ("import sys\nfrom pipeline_src.config import load_params, validate_params\n"
            f"validate_params(load_params({str(repo / 'params.yaml')!r}))\n"
            "print(' '.join(m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == []  # every job may validate its params: that must not cost an `import torch`
