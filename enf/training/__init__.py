"""Lightning modules and callbacks."""

from enf.training.callbacks import RunArtifacts
from enf.training.fitting_module import FieldFittingModule

__all__ = ["FieldFittingModule", "RunArtifacts"]
