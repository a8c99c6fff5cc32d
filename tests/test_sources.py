"""The downloading sources end to end through ``prepare``, offline: a local HTTP server and a fake Kaggle client."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from download_fixtures import serve, sha256, zip_bytes
from pipeline_src.config import DatasetSpec
from pipeline_src.data import rsna
from pipeline_src.data.isic2018 import IsicError
from pipeline_src.data.prepare import prepare
from pipeline_src.data.rsna import KaggleCredentialsError, kaggle_credentials

ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")


def _jpeg(value: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((30, 40, 3), value, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def isic_fixture(per_class: dict[str, int]) -> dict[str, bytes]:
    images, rows, groups = {}, ["image," + ",".join(ISIC_CLASSES)], ["image,lesion_id"]
    k = 0
    for cls, n in per_class.items():
        for i in range(n):
            name = f"ISIC_{k:07d}"
            images[f"ISIC2018_Task3_Training_Input/{name}.jpg"] = _jpeg(20 * ISIC_CLASSES.index(cls))
            rows.append(name + "," + ",".join("1.0" if c == cls else "0.0" for c in ISIC_CLASSES))
            groups.append(f"{name},HAM_{cls}_{i // 2}")  # two images per lesion
            k += 1
    gt = zip_bytes({"ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv":
                    ("\n".join(rows) + "\n").encode()})
    return {"/images.zip": zip_bytes(images), "/gt.zip": gt, "/groups.csv": ("\n".join(groups) + "\n").encode()}


def isic_spec(url: str, files: dict, raw_dir, lesion_aware: bool = False, groups: bool = True) -> DatasetSpec:
    downloads = {"images": {"url": f"{url}/images.zip", "checksum": sha256(files["/images.zip"])},
                 "ground_truth": {"url": f"{url}/gt.zip", "checksum": sha256(files["/gt.zip"])},
                 "lesion_groupings": {"url": f"{url}/groups.csv" if groups else f"{url}/absent.csv",
                                      "checksum": None}}
    return DatasetSpec(source="isic2018", image_size=16, classes=("MEL", "NV", "BCC", "BKL"), caps={"NV": 8},
                       test_fraction=0.25, seed=0, raw_dir=str(raw_dir), downloads=json.dumps(downloads),
                       lesion_aware=lesion_aware)


def test_isic2018_download_and_skin4_rules(tmp_path):
    files = isic_fixture({"MEL": 8, "NV": 12, "BCC": 4, "BKL": 8, "AKIEC": 2, "DF": 2, "VASC": 2})
    with serve(files) as (url, handler):
        summary = prepare(isic_spec(url, files, tmp_path / "raw"), tmp_path / "out")
        again = prepare(isic_spec(url, files, tmp_path / "raw"), tmp_path / "out2")
    assert summary["train"]["per_class"] == {"MEL": 6, "NV": 6, "BCC": 3, "BKL": 6}
    assert summary["test"]["per_class"] == {"MEL": 2, "NV": 2, "BCC": 1, "BKL": 2}
    assert summary["channels"] == 3 and again == summary
    assert [r["path"] for r in handler.requests] == ["/images.zip", "/gt.zip"]  # cached the second time


def test_isic2018_lesion_aware_split_keeps_lesions_together(tmp_path):
    files = isic_fixture({"MEL": 8, "NV": 12, "BCC": 4, "BKL": 8})
    with serve(files) as (url, _):
        spec = isic_spec(url, files, tmp_path / "raw", lesion_aware=True)
        summary = prepare(spec, tmp_path / "out")
        from pipeline_src.data.prepare import load_downloaded, split_indices
        raw = load_downloaded(spec)
    train, test = split_indices(spec, raw.labels, raw.groups)
    assert {raw.groups[i] for i in train}.isdisjoint(raw.groups[i] for i in test)
    assert summary["test"]["n"] + summary["train"]["n"] == 8 + 8 + 4 + 8


def test_isic2018_lesion_aware_without_metadata_says_where_to_put_it(tmp_path):
    files = isic_fixture({"MEL": 4, "NV": 4, "BCC": 4, "BKL": 4})
    with serve(files) as (url, _):
        with pytest.raises(IsicError, match=r"put HAM10000_metadata\.csv .* into .*isic2018.*lesion_aware: false"):
            prepare(isic_spec(url, files, tmp_path / "raw", lesion_aware=True, groups=False), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _npz(variant_labels: np.ndarray, size: int, channels: int) -> bytes:
    rng = np.random.default_rng(0)
    shape = (size, size) if channels == 1 else (size, size, 3)
    arrays = {}
    for split, labels in zip(("train", "val", "test"), np.array_split(variant_labels, 3)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (len(labels), *shape), dtype=np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_medmnist_dermamnist_maps_ham10000_classes(tmp_path):
    import hashlib

    labels = np.repeat(np.arange(7), [3, 4, 6, 2, 6, 12, 2])  # AKIEC BCC BKL DF MEL NV VASC
    data = _npz(labels, 28, 3)
    with serve({"/derma.npz": data}) as (url, _):
        downloads = {"npz": {"url": f"{url}/derma.npz", "checksum": "md5:" + hashlib.md5(data).hexdigest()}}
        spec = DatasetSpec(source="medmnist", image_size=28, classes=("MEL", "NV", "BCC", "BKL"), caps={"NV": 8},
                           test_fraction=0.25, seed=0, raw_dir=str(tmp_path / "raw"),
                           downloads=json.dumps(downloads), variant="dermamnist")
        summary = prepare(spec, tmp_path / "out")
    total = {c: summary["train"]["per_class"][c] + summary["test"]["per_class"][c] for c in spec.classes}
    assert total == {"MEL": 6, "NV": 8, "BCC": 4, "BKL": 6}
    assert summary["channels"] == 3 and (tmp_path / "raw" / "medmnist" / "dermamnist_28.npz").is_file()


# --------------------------------------------------------------------------- RSNA via a fake Kaggle client

def test_missing_kaggle_credentials_say_where_to_put_them(tmp_path):
    with pytest.raises(KaggleCredentialsError, match=r"\.kaggle/kaggle\.json.*KAGGLE_USERNAME and KAGGLE_KEY"):
        kaggle_credentials(env={}, home=tmp_path)
    (tmp_path / ".kaggle").mkdir()
    (tmp_path / ".kaggle" / "kaggle.json").write_text('{"username": "u"}')
    with pytest.raises(KaggleCredentialsError, match=r"kaggle\.json must hold"):
        kaggle_credentials(env={}, home=tmp_path)
    (tmp_path / ".kaggle" / "kaggle.json").write_text('{"username": "u", "key": "secret"}')
    where = kaggle_credentials(env={}, home=tmp_path)
    assert where.endswith("kaggle.json") and "secret" not in where
    assert "secret" not in kaggle_credentials(env={"KAGGLE_USERNAME": "u", "KAGGLE_KEY": "secret"}, home=tmp_path)


def test_rsna_without_credentials_stops_before_the_client(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(rsna, "make_kaggle_api", lambda: pytest.fail("the Kaggle client must not be created"))
    spec = DatasetSpec(source="rsna", image_size=16, classes=rsna.RSNA_CLASSES, train_count=4, test_count=2,
                       raw_dir=str(tmp_path / "raw"))
    with pytest.raises(KaggleCredentialsError, match="kaggle.json"):
        prepare(spec, tmp_path / "out")


def _dicom(value: int) -> bytes:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((32, 32), value, dtype=np.uint8).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class FakeKaggleApi:
    """Stands in for kaggle's KaggleApi: writes the competition zip the real client would."""
    calls: list = []

    def __init__(self, archive: bytes):
        self.archive = archive

    def competition_download_files(self, competition, path=None, force=False, quiet=True):
        FakeKaggleApi.calls.append(competition)
        with open(f"{path}/{competition}.zip", "wb") as fh:
            fh.write(self.archive)


def test_rsna_one_label_per_patient_from_dicoms(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "user")
    monkeypatch.setenv("KAGGLE_KEY", "key")
    classes = rsna.RSNA_CLASSES
    rows, members = ["patientId,class"], {}
    for k in range(12):
        pid, cls = f"p{k:02d}", classes[k % 3]
        rows += [f"{pid},{cls}"] * (2 if cls == "Lung Opacity" else 1)  # several boxes -> repeated rows
        members[f"stage_2_train_images/{pid}.dcm"] = _dicom(10 * k)
    members["stage_2_detailed_class_info.csv"] = ("\n".join(rows) + "\n").encode()
    archive = zip_bytes(members)
    monkeypatch.setattr(rsna, "make_kaggle_api", lambda: FakeKaggleApi(archive))
    FakeKaggleApi.calls = []
    spec = DatasetSpec(source="rsna", image_size=16, classes=classes, train_count=8, test_count=4,
                       raw_dir=str(tmp_path / "raw"))
    summary = prepare(spec, tmp_path / "out")
    prepare(spec, tmp_path / "out2")  # the extracted folder is reused
    assert FakeKaggleApi.calls == [rsna.RSNA_COMPETITION]
    assert summary["train"]["n"] == 8 and summary["test"]["n"] == 4 and summary["channels"] == 1
    assert all(v == 4 for v in map(sum, zip(summary["train"]["per_class"].values(),
                                            summary["test"]["per_class"].values())))
    assert not list((tmp_path / "raw" / "rsna" / "downloads").glob("*.zip"))
