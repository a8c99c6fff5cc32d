"""Class names each data source delivers, and MedMNIST's sizes: constants the parameter validation needs.

Kept apart from the sources themselves (and from download URLs in catalog.py) so that validating
params.yaml imports nothing heavy, and a job's code inputs do not include every data source.
"""
from __future__ import annotations

SYNTHETIC_CLASSES: dict[str, tuple[str, ...]] = {
    "synthetic-skin4": ("MEL", "NV", "BCC", "BKL"),
    "synthetic-chest3": ("Normal", "Lung Opacity", "No Lung Opacity / Not Normal"),
}
ISIC2018_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
RSNA_CLASSES = ("Normal", "Lung Opacity", "No Lung Opacity / Not Normal")
MEDMNIST_SIZES = (28, 64, 128, 224)
# MedMNIST label index -> our class name. DermaMNIST is HAM10000 = ISIC 2018 task 3: the ISIC codes.
MEDMNIST_CLASSES = {
    "dermamnist": ("AKIEC", "BCC", "BKL", "DF", "MEL", "NV", "VASC"),
    "pneumoniamnist": ("Normal", "Pneumonia"),
}


def source_classes(source: str, variant: str | None = None) -> tuple[str, ...]:
    """Class names a downloading source can deliver (for validating ``datasets.<name>.classes``)."""
    if source == "isic2018":
        return ISIC2018_CLASSES
    if source == "rsna":
        return RSNA_CLASSES
    if source == "medmnist" and variant in MEDMNIST_CLASSES:
        return MEDMNIST_CLASSES[variant]
    return ()
