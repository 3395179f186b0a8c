"""Equivariant neural fields in PyTorch."""

from enf import dynamics, editing, geometry, shape
from enf.latents import Latents
from enf.nn import EquivariantNeuralField, GlobalLatentField

__version__ = "0.1.0"

__all__ = [
    "EquivariantNeuralField",
    "GlobalLatentField",
    "Latents",
    "dynamics",
    "editing",
    "geometry",
    "shape",
    "__version__",
]
