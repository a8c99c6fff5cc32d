"""Classifiers with the embedded auto-encoder (paper section 2.2)."""
from pipeline_src.models.denoising import DenoisingClassifier, ModelSpec, Outputs, build_model, model_from_state

__all__ = ["DenoisingClassifier", "ModelSpec", "Outputs", "build_model", "model_from_state"]
