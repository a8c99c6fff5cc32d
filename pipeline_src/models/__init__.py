"""Classifiers with the embedded auto-encoder (paper section 2.2)."""
from pipeline_src.models.denoising import DenoisingClassifier, ModelSpec, Outputs, build_model, model_from_state
from pipeline_src.models import mobilenet  # noqa: F401,E402  (registers the arch "mobilenetv2")

__all__ = ["DenoisingClassifier", "ModelSpec", "Outputs", "build_model", "model_from_state"]
