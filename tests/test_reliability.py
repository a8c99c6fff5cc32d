"""Reliability: bad input, interruption, integrity and security, each tried (README, "What we tried").

Each test is named after the row of that README table it backs. Concurrency and determinism of the
whole workflow are in test_workflow.py / test_tracking.py (they reuse the session's smoke run).
"""
from __future__ import annotations

import contextlib
import errno
import logging
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from pipeline_src.config import DatasetSpec, load_params
from pipeline_src.data.folder import FolderError
from pipeline_src.data.prepare import prepare
from pipeline_src.data.subsample import SubsampleError
from pipeline_src.io import load_torch, save_torch
from workflow_helpers import REPO, run_snakemake

FAKE_KAGGLE_KEY = "0123456789abcdef-not-a-real-kaggle-key"  # set in the smoke run's environment (conftest)


# --- 1. bad parameters: one message naming the key and the allowed values, before any job ----------------------

@pytest.mark.parametrize("overlay,message", [
    ({"training": {"batch_size": "big"}}, "'training.batch_size' = 'big' must be of type integer"),
    ({"attacks": {"fgsm_eps8": {"method": "fgsm", "eps": 300}}}, "'attacks.fgsm_eps8.eps' = 300 must be <= 255"),
    ({"tables": {"table3_skin4_vgg16": {"arch": "alexnet"}}},
     "'tables.table3_skin4_vgg16.arch' = 'alexnet' is not allowed; allowed values: resnet18, vgg16"),
    ({"tables": {"table2_chest3_resnet18": {"dataset": "mnist"}}},
     "'tables.table2_chest3_resnet18.dataset' = 'mnist' is not a defined dataset; defined datasets: skin4, chest3"),
    ({"tables": {"table2_chest3_resnet18": {"rows": [{"lambda_n": 1}]}}},
     "'tables.table2_chest3_resnet18.rows[0]': 'lambda_a' is a required property"),
    ({"tables": {"table2_chest3_resnet18": {"rows": [{"lambda_n": 1, "lambda_a": 0, "model": "resnet50"}]}}},
     "unknown key 'tables.table2_chest3_resnet18.rows[0].model'; allowed keys here: lambda_a, lambda_n"),
])
def test_bad_params_stop_snakemake_before_any_job(tmp_path, overlay, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(overlay))
    result = run_snakemake(tmp_path / "work", overlays=(path,))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert message in out
    assert out.count("invalid parameters:") == 1  # one message, not one per rule
    assert not (tmp_path / "work" / "data").exists() and not (tmp_path / "work" / "models").exists()


def test_missing_configfile_is_named_and_nothing_runs(tmp_path):
    # Snakemake reads --configfile itself, before our Snakefile: its traceback ends with the missing path.
    result = run_snakemake(tmp_path / "work", overlays=(tmp_path / "nope.yaml",))
    assert result.returncode != 0
    assert f"No such file or directory: '{tmp_path / 'nope.yaml'}'" in result.stderr
    assert not (tmp_path / "work" / "data").exists()
    # Our own entry point names it in one line.
    result = subprocess.run([sys.executable, "-m", "pipeline_src", "validate", str(REPO / "params.yaml"),
                             str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert result.returncode != 0 and "nope.yaml" in result.stderr and "Traceback" not in result.stderr


# --- 2. bad data: the file is named, or what was dropped/converted is counted; nothing half-written ------------

def _folder(root: Path, modes: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    rows = ["image,label"]
    rng = np.random.default_rng(0)
    for label, value in (("cat", 40), ("dog", 200)):
        for i in range(6):
            name = f"{label}{i}.png"
            arr = np.full((24, 24, 3), value, dtype=np.uint8) + rng.integers(0, 20, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(arr).convert((modes or {}).get(name, "RGB")).save(root / "images" / name)
            rows.append(f"images/{name},{(labels or {}).get(name, label)}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _spec(root: Path, **kw) -> DatasetSpec:
    base = dict(source="folder", image_size=16, classes=("cat", "dog"), caps={}, test_fraction=0.34,
                path=str(root), channels=3, seed=0)
    return DatasetSpec(**{**base, **kw})


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("damage,spec_kw,error,message", [
    (lambda r: _truncate(r / "images" / "dog2.png"), {}, FolderError, "dog2.png cannot be decoded"),
    (lambda r: (r / "images" / "cat3.png").write_bytes(b"not an image"), {}, FolderError, "cat3.png cannot be decoded"),
    (lambda r: (r / "labels.csv").write_text("image,label\nimages/cat0.png,cat\nimages/cat1.png,\n"), {},
     FolderError, "labels.csv, line 3: empty image or label"),
    (lambda r: None, {"classes": ("cat", "dog", "bird")}, SubsampleError, "class 'bird' has no images after subsampling"),
    (lambda r: None, {"caps": {"dog": 0}}, SubsampleError, "class 'dog' has no images after subsampling"),
])
def test_bad_data_is_named_and_nothing_is_written(tmp_path, damage, spec_kw, error, message):
    root = _folder(tmp_path / "ds")
    damage(root)
    with pytest.raises(error, match=re.escape(message)):
        prepare(_spec(root, **spec_kw), tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_labels_outside_the_class_list_are_dropped_and_counted(tmp_path, caplog):
    root = _folder(tmp_path / "ds", labels={"cat0.png": "kat", "dog5.png": "kat", "dog4.png": "wolf"})
    with caplog.at_level(logging.WARNING):
        summary = prepare(_spec(root), tmp_path / "out")
    assert summary["dropped"] == {"kat": 2, "wolf": 1}
    assert "dropped 3 of 12 images whose label is not in classes ['cat', 'dog']: {'kat': 2, 'wolf': 1}" in caplog.text
    assert summary["train"]["n"] + summary["test"]["n"] == 9


def test_grayscale_image_in_an_rgb_set_is_converted_counted_and_named(tmp_path, caplog):
    root = _folder(tmp_path / "ds", modes={"cat1.png": "L", "dog0.png": "L"})
    with caplog.at_level(logging.WARNING):
        summary = prepare(_spec(root), tmp_path / "out")
    assert summary["channels"] == 3
    assert "2 of 12 images converted to RGB (datasets.<name>.channels = 3): images/cat1.png, images/dog0.png" in caplog.text


# --- 3. interruption: a killed training resumes to identical weights; a killed attack leaves no output ----------

def _tiny_split(n: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 100, (n, 1, 32, 32), generator=g, dtype=torch.uint8)
    images[labels == 1, :, 8:24, 8:24] = 230
    return {"images": images, "labels": labels, "classes": ["a", "b"]}


MODEL = "chest3_resnet18_ln1_la10_s0"  # a row of params.yaml's Table 2


@pytest.fixture(scope="module")
def train_setup(tmp_path_factory) -> dict:
    """A run directory with a tiny two-class split and params.yaml (3 epochs, batch 32, a long C&W), as the
    jobs of a real run see it: they read their own keys from params.yaml in their working directory."""
    root = tmp_path_factory.mktemp("interrupt")
    save_torch(_tiny_split(96, 0), root / "train.pt")
    save_torch(_tiny_split(32, 1), root / "test.pt")
    params = load_params(REPO / "params.yaml")
    params["training"].update(epochs=3, batch_size=32)
    params["attacks"]["cw"] = {"method": "cw", "binary_search_steps": 5, "steps": 2000, "stepsize": 0.01,
                               "confidence": 0, "initial_const": 0.001, "abort_early": False}
    params["tracking"]["enabled"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    setup = {"root": root}
    subprocess.run(_train_cmd(setup, "reference"), check=True, capture_output=True, text=True, timeout=300, cwd=root)
    return setup


def _train_cmd(setup: dict, name: str) -> list[str]:
    root = setup["root"]
    return [sys.executable, "-m", "pipeline_src.stages.train", "--model", MODEL, "--train", str(root / "train.pt"),
            "--test", str(root / "test.pt"), "--out", str(root / f"{name}.pt"), "--metrics", str(root / f"{name}.json"),
            "--curve", str(root / f"{name}.csv")]


def _kill_when(proc: subprocess.Popen, ready, sig: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the job ended before the moment it was to be killed"
        assert time.monotonic() < deadline, "the job never reached the moment it was to be killed"
        time.sleep(0.01)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode == -sig


@pytest.mark.heavy  # a determinism re-run: the killed training resumed against an uninterrupted one
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_training_killed_mid_run_resumes_to_identical_weights(train_setup, sig):
    root, name = train_setup["root"], f"killed_{sig.name}"
    out, ckpt = root / f"{name}.pt", root / f"{name}.pt.ckpt"
    proc = subprocess.Popen(_train_cmd(train_setup, name), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            cwd=root)
    _kill_when(proc, ckpt.exists, sig)  # killed during epoch 2, right after epoch 1's checkpoint
    assert ckpt.exists() and not out.exists() and not (root / f"{name}.json").exists()

    resumed = subprocess.run(_train_cmd(train_setup, name), capture_output=True, text=True, timeout=300, cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(rf"resuming .*{name}\.pt after epoch [12]\b", resumed.stderr)
    full, again = load_torch(root / "reference.pt"), load_torch(out)
    assert full["model"].keys() == again["model"].keys()
    for key, value in full["model"].items():
        assert torch.equal(value, again["model"][key]), key
    assert full["history"] == again["history"]
    assert (root / "reference.json").read_bytes() == (root / f"{name}.json").read_bytes()
    assert not ckpt.exists()


@pytest.mark.heavy  # its fixture trains a reference model first (the tests above share it)
def test_attack_killed_mid_run_leaves_no_output(train_setup):
    root = train_setup["root"]
    out = root / "cw.pt"
    cmd = [sys.executable, "-m", "pipeline_src.stages.attack", "--dataset", "chest3", "--attack", "cw",
           "--surrogate", str(root / "reference.pt"), "--test", str(root / "test.pt"), "--out", str(out),
           "--metrics", str(root / "cw.json")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root)
    started = time.monotonic()
    _kill_when(proc, lambda: time.monotonic() - started > 4.0, signal.SIGKILL)  # well inside 5 x 2000 C&W steps
    leftovers = sorted(p.name for p in root.iterdir() if p.name.startswith(("cw", ".cw")))
    assert leftovers == [], leftovers  # nothing Snakemake or DVC could take for a finished output


# --- 4. determinism of every file, not only the tables ------------------------------------------------------

def test_saved_tensors_are_byte_identical_whatever_the_temporary_name(tmp_path):
    """Models, datasets and adversarial sets are DVC outputs: the same tensors must give the same bytes."""
    blob = {"model": {"w": torch.arange(12.0).reshape(3, 4)}, "classes": ["a", "b"]}
    save_torch(blob, tmp_path / "one.pt")
    save_torch(blob, tmp_path / "two" / "other_name.pt")
    assert (tmp_path / "one.pt").read_bytes() == (tmp_path / "two" / "other_name.pt").read_bytes()
    assert torch.equal(load_torch(tmp_path / "one.pt")["model"]["w"], blob["model"]["w"])


def test_a_full_disk_names_the_file_and_the_free_space_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    """torch's zip writer reports a full disk as "unexpected pos N vs M" (CI saw it): say what it was."""
    real_save = torch.save

    full = open("/dev/full", "wb")  # answers every write with ENOSPC; closed below (its close fails too)

    def save_to_a_full_disk(obj, fh):  # the real writer, buffered as save_torch's own file object
        real_save(obj, full)

    monkeypatch.setattr(torch, "save", save_to_a_full_disk)
    target = tmp_path / "models" / "m.pt"
    with pytest.raises(OSError, match="no space left to write") as caught:
        save_torch({"w": torch.zeros(50_000)}, target)
    assert caught.value.errno == errno.ENOSPC
    assert str(target) in str(caught.value) and "free on its disk" in str(caught.value)
    chain, exc = [], caught.value
    while exc is not None:
        chain, exc = chain + [repr(exc)], exc.__cause__
    assert any("unexpected pos" in e for e in chain), chain  # torch's own error stays in the chain
    assert list(target.parent.iterdir()) == []  # no output, no temporary file
    with contextlib.suppress(OSError):
        full.close()


def test_other_save_errors_pass_through_unchanged(tmp_path, monkeypatch):
    def broken(obj, fh):
        raise RuntimeError("not a disk problem")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="^not a disk problem$"):
        save_torch({"w": torch.zeros(3)}, tmp_path / "m.pt")
    assert list(tmp_path.iterdir()) == []


# --- 6. security ------------------------------------------------------------------------------------------------

class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_load_refuses_a_pickle_that_would_run_code(tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"model": _RunsCode(marker)}, evil)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_torch(evil)
    assert not marker.exists()
    # every load in the package goes through load_torch
    offenders = [str(p) for p in (REPO / "pipeline_src").rglob("*.py")
                 if "torch.load(" in p.read_text() and p.name != "io.py"]
    assert offenders == []
    assert "weights_only=True" in (REPO / "pipeline_src" / "io.py").read_text()


def test_mlflow_ui_instructions_bind_localhost():
    docs = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), REPO / "Makefile"]
    lines = [(p.name, line) for p in docs if p.exists() for line in p.read_text().splitlines()
             if re.search(r"\bmlflow ui\b", line) and not line.lstrip().startswith(("#", ">"))]
    assert lines, "the README should say how to open the MLflow UI"
    for name, line in lines:
        assert "--host 127.0.0.1" in line, f"{name}: {line.strip()}"


def test_credentials_in_the_environment_never_reach_logs_or_mlflow(smoke_run):
    """The smoke run had KAGGLE_USERNAME / KAGGLE_KEY set (conftest): grep every file it wrote."""
    from workflow_helpers import tracked_files

    hits, sources = [], set(tracked_files())  # the clone's own code and tests are not what the run wrote
    for path in smoke_run.rglob("*"):
        if path.is_file() and str(path.relative_to(smoke_run)) not in sources and FAKE_KAGGLE_KEY.encode() in path.read_bytes():
            hits.append(str(path.relative_to(smoke_run)))
    assert (smoke_run / "mlflow.db").is_file() and (smoke_run / "logs").is_dir()
    assert hits == []
