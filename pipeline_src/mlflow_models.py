"""Classifiers as MLflow models and prepared splits as MLflow inputs, beside the DVC-tracked files.

``log_classifier`` logs a trained classifier with ``mlflow.pytorch`` in the ``pt2`` format (``torch.export``:
a traced graph of aten operators, loaded without this package and without unpickling code), with a tensor
signature ``float32 [batch, C, H, W] -> float32 [batch, classes]`` (logits), an input example, the pip
requirements pinned as ``requirements.lock`` pins them, and metadata naming the DVC copy (the checkpoint's
path and sha256), the classes and the input convention (RGB or grey, values in [0, 1], not normalised: the
model normalises inside). ``mlflow models serve -m models:/<model_id>`` and the model registry take it.

``log_split`` records a prepared split as a dataset input of a run (``mlflow.data.from_numpy``): its schema
and size, its path as the source, context ``train`` or ``test``, and as digest the split file's sha256
(cut to the 36 characters MLflow stores; the full hash is the input's ``sha256`` tag).

Both take a run id and a tracking URI (the stages' ``tracking.Run``: ``run.run_id``, ``run.client.tracking_uri``)
and import MLflow inside, like ``tracking.py``.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline_src.envlock import LOCK, requirements

log = logging.getLogger(__name__)

MODEL_NAME = "classifier"  # the logged model's name within its run
# what serving the pt2 program needs: torch runs the graph, numpy and mlflow carry the pyfunc wrapper
MODEL_REQUIREMENTS = ("torch", "numpy", "mlflow")
EXAMPLE_BATCH = 2  # torch.export makes a size-1 dimension static: 2 keeps the batch dimension dynamic
DIGEST_CHARS = 36  # MLflow's limit on a dataset digest


@dataclass(frozen=True)
class LoggedClassifier:
    model_uri: str  # models:/<model_id>: what mlflow.pytorch.load_model and `mlflow models serve -m` take
    model_id: str
    seconds: float  # wall time of export + logging


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def example_input(channels: int, image_size: int, batch: int = EXAMPLE_BATCH, seed: int = 0) -> np.ndarray:
    """A deterministic input of the served shape and range: float32 [batch, C, H, W] in [0, 1]."""
    return np.random.default_rng(seed).random((batch, channels, image_size, image_size), dtype=np.float32)


def classifier_signature(channels: int, image_size: int, num_classes: int):
    """Tensor signature (pt2 needs one): images in, logits out, any batch size. The tensors are unnamed: with
    a named input MLflow hands the model a dict, which the PyTorch flavour refuses when serving."""
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, image_size, image_size))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, num_classes))]))


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's model logging reads the process-wide tracking URI: set it for the call only."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def log_classifier(model: torch.nn.Module, *, run_id: str, tracking_uri: str, channels: int, image_size: int,
                   classes: Sequence[str], checkpoint: str | Path | None = None, lock: str | Path = LOCK,
                   name: str = MODEL_NAME, registered_model_name: str | None = None) -> LoggedClassifier:
    """Log ``model`` (its ``forward`` maps [B, C, H, W] images in [0, 1] to logits) as an MLflow model of run
    ``run_id``; ``checkpoint``, the DVC-tracked file the model came from, is named in the metadata."""
    import mlflow
    from mlflow.models import Model

    started = time.perf_counter()
    model = copy.deepcopy(model).to("cpu").eval()  # the caller's model keeps its device and mode
    example = example_input(channels, image_size)
    metadata = {"classes": list(classes), "input": "float32 [batch, C, H, W], values in [0, 1] (not normalised)",
                "output": "logits [batch, classes]; argmax is the predicted class"}
    if checkpoint is not None:
        metadata.update(checkpoint=str(checkpoint), checkpoint_sha256=file_sha256(checkpoint))
    with _tracking_uri(tracking_uri), torch.no_grad():
        info = Model.log(artifact_path=None, name=name, flavor=mlflow.pytorch, run_id=run_id, pytorch_model=model,
                         serialization_format="pt2", signature=classifier_signature(channels, image_size,
                                                                                      len(classes)),
                         input_example=example, pip_requirements=requirements(MODEL_REQUIREMENTS, lock),
                         metadata=metadata, registered_model_name=registered_model_name)
    seconds = time.perf_counter() - started
    log.info("logged %s as MLflow model %s in %.1f s", checkpoint or name, info.model_uri, seconds)
    return LoggedClassifier(model_uri=info.model_uri, model_id=info.model_id, seconds=seconds)


def log_split(path: str | Path, *, run_id: str, tracking_uri: str, context: str, name: str | None = None,
              source: str | None = None) -> str:
    """Record the prepared split at ``path`` (``data.prepare`` format) as a dataset input of run ``run_id``;
    ``source``: the path to name (default ``path``; the flusher reads a hard link of the job's file). Returns
    the digest stored (the first 36 hex digits of the file's sha256)."""
    import mlflow.data
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.tracking import MlflowClient
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from pipeline_src.data.prepare import load_split

    path = Path(path)
    split = load_split(path)
    sha = file_sha256(path)
    with warnings.catch_warnings():  # MLflow registers two identical local-file source classes and says so
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple")
        dataset = mlflow.data.from_numpy(split.images.numpy(), targets=split.labels.numpy(), source=source or str(path),
                                         name=name or f"{path.parent.name}/{path.stem}", digest=sha[:DIGEST_CHARS])
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, context), InputTag("sha256", sha),
            InputTag("classes", ",".join(split.classes))]
    # _to_mlflow_entity is what the fluent mlflow.log_input calls; the client API needs no active run
    MlflowClient(tracking_uri).log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)])
    return sha[:DIGEST_CHARS]
