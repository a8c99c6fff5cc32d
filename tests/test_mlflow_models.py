"""A classifier logged as an MLflow model loads back with mlflow.pytorch.load_model and classifies as before;
a prepared split is a dataset input of its run, with its sha256 as digest."""
from __future__ import annotations

import json

import pytest
import torch

from pipeline_src.envlock import LOCK, read_pins
from pipeline_src.io import save_torch
from pipeline_src.mlflow_models import DIGEST_CHARS, file_sha256, log_classifier, log_split
from pipeline_src.models import ModelSpec, build_model

mlflow = pytest.importorskip("mlflow")

CLASSES = ["a", "b", "c"]


@pytest.fixture()
def store(tmp_path):
    """A sqlite store and artifact folder inside tmp_path, and one run in it."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("models", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(exp, run_name="train")
    return uri, client, run.info.run_id


SIZE = 32


def _tiny_split(n: int = 12, size: int = SIZE, seed: int = 0):
    """Images a tiny model can learn in a few steps: the class is which third of the image is bright."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % len(CLASSES)
    images = torch.randint(0, 60, (n, 3, size, size), generator=g, dtype=torch.uint8)
    for i, y in enumerate(labels.tolist()):
        images[i, :, :, y * size // 3:(y + 1) * size // 3] += 180
    return images, labels


def _trained_model(images, labels):
    torch.manual_seed(0)
    model = build_model(ModelSpec("vgg16", len(CLASSES), 3, SIZE, "block1", vgg_width=0.125))  # small: fast
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = images.float() / 255
    model.train()
    for _ in range(8):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        opt.step()
    return model.eval()


def test_logged_classifier_loads_and_reproduces_its_clean_accuracy(store, tmp_path):
    uri, client, run_id = store
    images, labels = _tiny_split()
    model = _trained_model(images, labels)
    checkpoint = tmp_path / "models" / "tiny.pt"
    save_torch({"model": model.state_dict()}, checkpoint)
    x = images.float() / 255
    with torch.no_grad():
        logits = model(x)
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    assert accuracy > 1 / len(CLASSES)  # it learned something, so the comparison below can fail

    logged = log_classifier(model, run_id=run_id, tracking_uri=uri, channels=3, image_size=SIZE,
                            classes=CLASSES, checkpoint=checkpoint)
    assert logged.model_uri == f"models:/{logged.model_id}" and logged.seconds > 0

    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pytorch.load_model(logged.model_uri)
        info = mlflow.models.get_model_info(logged.model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    with torch.no_grad():
        again = loaded(x)  # the whole batch: the exported batch dimension is dynamic
        one = loaded(x[:1])
    assert (again.argmax(1) == labels).float().mean().item() == accuracy
    assert torch.equal(again.argmax(1), logits.argmax(1))
    torch.testing.assert_close(again, logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(one, logits[:1], rtol=1e-4, atol=1e-5)

    # what the registry and `mlflow models serve` read: signature, example, requirements, the DVC copy
    sig = info.signature.to_dict()
    assert json.loads(sig["inputs"])[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 3, SIZE, SIZE]}
    assert json.loads(sig["outputs"])[0]["tensor-spec"] == {"dtype": "float32", "shape": [-1, 3]}
    assert info.metadata["checkpoint_sha256"] == file_sha256(checkpoint)
    assert info.metadata["classes"] == CLASSES
    assert info.run_id == run_id
    location = client.get_logged_model(logged.model_id).artifact_location
    reqs = mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/requirements.txt", tracking_uri=uri)
    pins = read_pins(LOCK)
    lines = open(reqs).read().split()
    assert f"torch=={pins['torch']}" in lines and f"mlflow=={pins['mlflow']}" in lines


def test_prepared_split_is_an_input_of_the_run_with_its_sha256(store, tmp_path):
    uri, client, run_id = store
    images, labels = _tiny_split(n=9)
    path = tmp_path / "prepared" / "tiny" / "train.pt"
    save_torch({"images": images, "labels": labels, "classes": CLASSES}, path)
    digest = log_split(path, run_id=run_id, tracking_uri=uri, context="train")
    sha = file_sha256(path)
    assert digest == sha[:DIGEST_CHARS]
    (inp,) = client.get_run(run_id).inputs.dataset_inputs
    assert inp.dataset.digest == digest and inp.dataset.name == "tiny/train"
    tags = {t.key: t.value for t in inp.tags}
    assert tags["mlflow.data.context"] == "train" and tags["sha256"] == sha and tags["classes"] == "a,b,c"
    assert json.loads(inp.dataset.profile)["features_shape"] == [9, 3, SIZE, SIZE]
