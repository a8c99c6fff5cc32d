"""Issue 15, as a hostile but fair user would try it: archives that escape, secrets that print, values that are
not numbers, names that reach a shell or leave the tree, and data files that are not what they claim.

Each test failed on main before the fix (README, "What we tried, what happens"). New APIs are imported inside
the tests that need them, so that every other test still runs, and fails for its own reason, against old code.
"""
from __future__ import annotations

import io
import os
import re
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_src.config import DatasetSpec, ParamsError, load_params, validate_params
from pipeline_src.data.archive import UnsafeArchiveError, safe_extract
from pipeline_src.data.folder import FolderError, load_folder, read_labels
from pipeline_src.data.prepare import prepare
from pipeline_src.data.subsample import SubsampleError, subsample_split

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


# --------------------------------------------------------------------------- archives

def _zip(entries: list[tuple[str, bytes, bool]]) -> bytes:
    """(name, content, is_link) in order; a link's content is its target."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, link in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = ((stat.S_IFLNK | 0o777) if link else (stat.S_IFREG | 0o644)) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _chain(n: int) -> list[tuple[str, bytes, bool]]:
    """l1 -> ., l2 -> l1/.., l3 -> l2/.., ...: each link passes a textual check, l_k climbs k-1 folders."""
    return [("l1", b".", True)] + [(f"l{k}", f"l{k - 1}/..".encode(), True) for k in range(2, n + 1)]


def _extract_in_box(tmp_path: Path, data: bytes, **kwargs) -> Path:
    archive = tmp_path / "in" / "evil.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    archive.write_bytes(data)
    with pytest.raises(UnsafeArchiveError, match=r"evil\.(zip|tar)") as err:
        safe_extract(archive, tmp_path / "box" / "out", **kwargs)
    assert "\n" not in str(err.value)
    return tmp_path / "box"


def _only_the_archive(root: Path) -> bool:
    """Nothing but the archive under ``root`` (an empty box/ is allowed: the target's parent)."""
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    return [f for f in found if f != "box"] == ["in", "in/evil.zip"] and not list(root.glob("box/*"))


def test_zip_symlink_chain_with_a_member_behind_it_is_refused_and_writes_nothing_outside(tmp_path):
    _extract_in_box(tmp_path, _zip(_chain(3) + [("l3/ESCAPED.txt", b"escaped", False)]))
    assert not list(tmp_path.rglob("ESCAPED.txt"))
    assert _only_the_archive(tmp_path)


def test_zip_symlink_chain_alone_is_refused(tmp_path):
    """No member behind the links: the tree would keep a link that leads out once followed."""
    _extract_in_box(tmp_path, _zip([("ok.txt", b"fine", False), *_chain(3)]))
    assert _only_the_archive(tmp_path)


def test_zip_twelve_link_chain_to_an_absolute_path_is_refused(tmp_path):
    """l12 climbs to '/', then the member walks down to an absolute path (here: a file beside the target)."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    member = "l12/" + str(outside / "ESCAPED.txt").lstrip("/")
    _extract_in_box(tmp_path, _zip(_chain(12) + [(member, b"escaped", False)]))
    assert list(outside.iterdir()) == [] and not list(tmp_path.rglob("ESCAPED.txt"))


def test_zip_bomb_ratio_is_refused_with_default_limits(tmp_path):
    """20 MiB of zeros deflate to about 20 kB: 1000x, over the default 200x."""
    _extract_in_box(tmp_path, _zip([("zeros.bin", bytes(20 << 20), False)]))
    assert _only_the_archive(tmp_path)


def test_zip_over_the_size_and_count_limits_is_refused(tmp_path):
    from pipeline_src.data.archive import ArchiveLimits

    data = _zip([(f"f{i}.txt", os.urandom(1000), False) for i in range(5)])
    box = _extract_in_box(tmp_path, data, limits=ArchiveLimits(max_total_bytes=4000))
    assert _only_the_archive(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=r"member 'f4\.txt' takes the uncompressed total to 5000 bytes"):
        safe_extract(tmp_path / "in" / "evil.zip", box / "out", limits=ArchiveLimits(max_total_bytes=4000))
    with pytest.raises(UnsafeArchiveError, match=r"member 'f3\.txt' is number 4, over the limit of 3 members"):
        safe_extract(tmp_path / "in" / "evil.zip", box / "out", limits=ArchiveLimits(max_members=3))
    assert _only_the_archive(tmp_path)


def test_tar_over_the_size_limit_is_refused(tmp_path):
    from pipeline_src.data.archive import ArchiveLimits

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for i in range(3):
            info = tarfile.TarInfo(f"f{i}.bin")
            info.size = 1000
            tf.addfile(info, io.BytesIO(os.urandom(1000)))
    archive = tmp_path / "in" / "evil.tar"
    archive.parent.mkdir()
    archive.write_bytes(buf.getvalue())
    with pytest.raises(UnsafeArchiveError, match=r"evil\.tar: member 'f2\.bin' takes the uncompressed total"):
        safe_extract(archive, tmp_path / "box" / "out", limits=ArchiveLimits(max_total_bytes=2500))
    assert not (tmp_path / "box").exists() or list((tmp_path / "box").iterdir()) == []


# --------------------------------------------------------------------------- secrets

def test_redact_uri_hides_passwords_and_tokens_and_leaves_paths_alone():
    from pipeline_src.redact import redact_text, redact_uri

    assert redact_uri("http://user:pass@host:5000") == "http://user:***@host:5000"
    assert redact_uri("https://host/x?token=abc&page=2&password=pw") == "https://host/x?token=***&page=2&password=***"
    assert redact_uri("postgresql://mlflow:PW@db/mlflow") == "postgresql://mlflow:***@db/mlflow"
    for plain in ("sqlite:///mlflow.db", "sqlite:////abs/m.db", "file:///tmp/mlruns", "http://127.0.0.1:5000"):
        assert redact_uri(plain) == plain
    text = redact_text("MLflow tracking URI 'http://u:s3cret@h:1' failed: GET http://u:s3cret@h:1/api?token=t0k")
    assert "s3cret" not in text and "t0k" not in text and "'http://u:***@h:1'" in text


def test_summary_never_prints_the_password_and_says_open_the_url_for_a_server(tmp_path, monkeypatch):
    from pipeline_src.summary import summary

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://alice:s3cret@mlflow.example:5000")
    text = summary(tmp_path)
    assert "s3cret" not in text
    assert "open http://mlflow.example:5000 in a browser" in text
    assert "--backend-store-uri http" not in text and "mlflow server" not in text


def test_summary_for_a_local_store_prints_mlflow_ui_on_localhost(tmp_path, monkeypatch):
    from pipeline_src.summary import summary

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow.db").write_bytes(b"")
    text = summary(tmp_path)
    assert f" ui --backend-store-uri sqlite:///{(tmp_path / 'mlflow.db').resolve()} --host 127.0.0.1" in text


def test_tracking_errors_and_log_lines_do_not_show_the_password(caplog):
    import logging
    import socket

    from pipeline_src import tracking

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(tracking.TrackingError) as err:
        tracking.check_reachable(f"http://alice:s3cret@127.0.0.1:{port}?token=t0k", timeout=2)
    assert "s3cret" not in str(err.value) and "t0k" not in str(err.value)
    assert f"'http://alice:***@127.0.0.1:{port}?token=***'" in str(err.value)

    from pipeline_src.redact import install_log_redaction

    logger = logging.getLogger("hardening-test")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        install_log_redaction(logger)
        logger.warning("request to %s failed", "http://alice:s3cret@h/api")
        assert handler.stream.getvalue() == "request to http://alice:***@h/api failed\n"
    finally:
        logger.removeHandler(handler)


# --------------------------------------------------------------------------- numbers and YAML

def _overlay(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(text)
    return path


def _validate(*paths: Path) -> dict:
    return validate_params(load_params(PARAMS, *paths), source="test")


@pytest.mark.parametrize("text,key", [
    ("training: {lr: .nan}\n", "training.lr"),
    ("training: {lr: .inf}\n", "training.lr"),
    ("attacks: {fgsm_eps4: {method: fgsm, eps: .nan}}\n", "attacks.fgsm_eps4.eps"),
    ("tables:\n  table1_skin4_resnet18:\n    rows: [{lambda_n: .nan, lambda_a: 0}]\n",
     "tables.table1_skin4_resnet18.rows[0].lambda_n"),
    ("training: {weight_decay: -.inf}\n", "training.weight_decay"),
])
def test_nan_and_infinity_are_refused_naming_the_key(tmp_path, text, key):
    with pytest.raises(ParamsError, match=rf"^test: '{re.escape(key)}' = -?(nan|inf) is not a finite number"):
        _validate(_overlay(tmp_path, text))


def test_a_float_for_an_integer_key_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ParamsError, match=r"^test: 'training\.epochs' = 6\.0 must be an integer, .*\(write 6\)$"):
        _validate(_overlay(tmp_path, "training: {epochs: 6.0}\n"))
    with pytest.raises(ParamsError, match=r"'seeds\[1\]' = 2\.0 must be an integer"):
        _validate(_overlay(tmp_path, "seeds: [1, 2.0]\n"))


def test_a_duplicated_key_is_refused_naming_key_file_and_line(tmp_path):
    path = _overlay(tmp_path, "training:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(ParamsError, match=rf"^{re.escape(str(path))}, line 4: key 'lr' is given twice .*first on line 2"):
        load_params(PARAMS, path)


def test_yaml_merge_keys_still_override_without_a_duplicate_error():
    from pipeline_src.strict_yaml import loads

    assert loads("base: &b {lr: 1, epochs: 2}\nrun: {<<: *b, lr: 3}\n")["run"] == {"lr": 3, "epochs": 2}


def test_isic_ground_truth_refuses_a_nan_cell(tmp_path):
    from pipeline_src.data.isic2018 import IsicError, read_ground_truth

    csv = tmp_path / "gt.csv"
    csv.write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nISIC_1,1.0,nan,0.0,0.0,0.0,0.0,0.0\n")
    with pytest.raises(IsicError, match=r"gt\.csv, line 2: column NV = 'nan'"):
        read_ground_truth(csv)


# --------------------------------------------------------------------------- names

INJECTION = "datasets:\n  \"x;touch ../pwned3;\":\n    source: synthetic-skin4\n    image_size: 32\n" \
            "    classes: [MEL, NV]\n    synthetic_counts: {MEL: 20, NV: 20}\n    split: {test_fraction: 0.2}\n"
DOTDOT_TABLE = "tables:\n  ../../escaped:\n    dataset: skin4\n    arch: resnet18\n" \
               "    rows: [{lambda_n: 0, lambda_a: 0}]\n"


@pytest.mark.parametrize("text,key", [(INJECTION, "datasets.x;touch ../pwned3;"),
                                      (DOTDOT_TABLE, "tables.../../escaped")])
def test_unsafe_names_are_refused_by_validate(tmp_path, text, key):
    overlay = _overlay(tmp_path, text)
    message = f"'{key}' is not a safe name: use letters, digits, '_', '-', '.'"
    with pytest.raises(ParamsError, match=re.escape(message)):
        _validate(overlay)
    result = subprocess.run([sys.executable, "-m", "pipeline_src", "validate", str(PARAMS), str(overlay)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path.parent / "pwned3").exists()


@pytest.mark.parametrize("section,bad", [
    ("attacks", "fgsm eps4"), ("whitebox.attacks", "pgd/20"), ("combined_tables", ".hidden"), ("tables", "tab\u00e9"),
])
def test_every_name_section_uses_the_one_rule_in_the_schema_too(section, bad):
    import jsonschema

    from pipeline_src.config import load_schema

    cfg = load_params(PARAMS)
    node = cfg
    for part in section.split("."):
        node = node[part]
    node[bad] = next(iter(node.values()))
    with pytest.raises(ParamsError, match=re.escape(f"'{section}.{bad}' is not a safe name")):
        validate_params(cfg)
    errors = list(jsonschema.Draft202012Validator(load_schema()).iter_errors(cfg))  # Snakemake's validate
    assert any(e.validator == "pattern" and e.instance == bad for e in errors)
    from pipeline_src.config import is_safe_name

    assert is_safe_name("table1_skin4-resnet18.v2") and not is_safe_name("a..b") and not is_safe_name(7)


def test_derived_model_names_are_checked(tmp_path):
    text = "tables:\n  table1_skin4_resnet18:\n    rows: [{lambda_n: 1.0e+300, lambda_a: 0}]\n"
    with pytest.raises(ParamsError, match=r"the model name 'skin4_resnet18_ln1000.*is not a safe file name"):
        _validate(_overlay(tmp_path, text))


# --------------------------------------------------------------------------- data edge cases

def _folder(root: Path, extra: list[str] = (), n: int = 4) -> Path:
    (root / "images").mkdir(parents=True)
    rows = ["image,label"]
    for label, value in (("cat", 40), ("dog", 200)):
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), value + i, dtype=np.uint8)).save(root / "images" / f"{label}{i}.png")
            rows.append(f"images/{label}{i}.png,{label}")
    (root / "labels.csv").write_text("\n".join([*rows, *extra]) + "\n")
    return root


def _spec(root: Path) -> DatasetSpec:
    return DatasetSpec(source="folder", image_size=16, classes=("cat", "dog"), test_fraction=0.25, path=str(root),
                       channels=3, seed=0)


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_a_decompression_bomb_png_is_named_and_nothing_is_written(tmp_path):
    root = _folder(tmp_path / "ds", ["images/bomb.png,cat"])
    (root / "images" / "bomb.png").write_bytes(_png_header(50000, 50000))
    with pytest.raises(FolderError, match=r"images/bomb\.png: Image size \(2500000000 pixels\) exceeds limit"):
        prepare(_spec(root), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_fifo_listed_as_an_image_is_refused_without_hanging(tmp_path):
    root = _folder(tmp_path / "ds", ["images/pipe.png,dog"])
    fifo = root / "images" / "pipe.png"
    os.mkfifo(fifo)
    outcome: dict = {}

    def run():
        try:
            prepare(_spec(root), tmp_path / "out")
        except Exception as exc:  # noqa: BLE001 - handed to the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)  # a guard against a hang, not a speed target: the refusal takes milliseconds
    hung = worker.is_alive()
    if hung:  # let the blocked open() return, so the thread ends
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(30)
    assert not hung, "prepare blocked on the FIFO"
    assert isinstance(outcome.get("error"), FolderError)
    assert re.search(r"images/pipe\.png is not a regular file \(a FIFO\)", str(outcome["error"]))
    assert not (tmp_path / "out").exists()


def test_a_device_file_listed_as_an_image_is_refused(tmp_path):
    root = _folder(tmp_path / "ds", ["images/zero.png,dog"])
    try:
        os.mknod(root / "images" / "zero.png", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot create a device node here ({exc})")
    with pytest.raises(FolderError, match=r"images/zero\.png is not a regular file \(a character device\)"):
        prepare(_spec(root), tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("second", ["images/cat1.png,cat", "images/cat1.png,dog", "./images/../images/cat1.png,dog"])
def test_an_image_listed_twice_is_refused_naming_both_lines(tmp_path, second):
    root = _folder(tmp_path / "ds", [second])  # cat1 is on line 3; the repeat on line 10
    with pytest.raises(FolderError, match=r"labels\.csv: image '.*cat1\.png' is listed on lines 3 and 10"):
        prepare(_spec(root), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_labels_csv_with_a_byte_order_mark_is_accepted(tmp_path):
    root = _folder(tmp_path / "ds")
    csv = root / "labels.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + csv.read_bytes())
    assert read_labels(root)[0] == ("images/cat0.png", "cat")
    images, labels = load_folder(root, channels=3, image_size=16)
    assert images.shape == (8, 3, 16, 16) and labels.count("dog") == 4


@pytest.mark.parametrize("train,test", [(100, 10), (60, 60), (55, 5)])
def test_the_split_hint_names_an_achievable_count(train, test):
    labels = ["a"] * 30 + ["b"] * 20
    with pytest.raises(SubsampleError) as err:
        subsample_split(labels, ["a", "b"], {}, seed=0, train_count=train, test_count=test)
    hint = re.search(r"e\.g\. (.*) uses every remaining image", str(err.value))
    assert hint, str(err.value)
    counts = {"train": train, "test": test} | {k: int(v) for k, v in re.findall(r"(train|test): (-?\d+)", hint[1])}
    assert min(counts.values()) > 0
    tr, te = subsample_split(labels, ["a", "b"], {}, seed=0, train_count=counts["train"], test_count=counts["test"])
    assert len(tr) == counts["train"] and len(te) == counts["test"]


# --------------------------------------------------------------------------- docs

def test_reliability_table_lists_every_hardening_test():
    """docs/reliability.md (linked from README's reliability section) names every test of this file."""
    readme = (REPO / "README.md").read_text()
    table = (REPO / "docs" / "reliability.md").read_text()
    names = re.findall(r"^def (test_\w+)", Path(__file__).read_text(), re.MULTILINE)
    missing = [n for n in names if n not in table and n != "test_reliability_table_lists_every_hardening_test"]
    assert not missing, missing
    assert "snakemake --unlock" in readme


# --------------------------------------------------------------------------- the same refusals through Snakemake

@pytest.mark.parametrize("text,message", [
    (INJECTION, "'datasets.x;touch ../pwned3;' is not a safe name"),
    (DOTDOT_TABLE, "'tables.../../escaped' is not a safe name"),
    ("training: {lr: .nan}\n", "'training.lr' = nan is not a finite number"),
    ("training: {epochs: 6.0}\n", "'training.epochs' = 6.0 must be an integer"),
    ("training:\n  lr: 0.1\n  lr: 0.2\n", "line 3: key 'lr' is given twice"),
])
def test_snakemake_refuses_them_before_planning_with_one_message(tmp_path, text, message):
    from workflow_helpers import run_snakemake

    overlay = _overlay(tmp_path, text)
    work = tmp_path / "work"
    work.mkdir()
    result = run_snakemake(work, "-n", overlays=(overlay,))
    out = result.stdout + result.stderr
    assert result.returncode != 0 and message in out
    assert "Traceback" not in out
    assert not (tmp_path / "pwned3").exists() and not (tmp_path.parent / "pwned3").exists()
    assert not (work / "results").exists() and not (work / "params.yaml").exists()
