"""Equivariant neural fields in PyTorch."""

from enf import _legacy, downstream, dynamics, editing, geometry, shape
from enf.latents import Latents
from enf.nn import EquivariantNeuralField, GlobalLatentField

__version__ = "0.1.0"

_legacy.install()  # module paths of the previous layout stay importable

__all__ = [
    "EquivariantNeuralField",
    "GlobalLatentField",
    "Latents",
    "downstream",
    "dynamics",
    "editing",
    "geometry",
    "shape",
    "__version__",
]
