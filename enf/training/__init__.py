"""Lightning modules, callbacks and checkpoint loading (one LightningModule per task)."""

from enf.training.callbacks import FieldTask, RunArtifacts, TaskCheckpoint
from enf.training.checkpoints import FitCheckpoint, load_fit_checkpoint, read_checkpoint
from enf.training.classification_module import ClassificationModule
from enf.training.fitting_module import LOSSES, FieldFittingModule, resolve_loss
from enf.training.forecasting_module import ForecastingModule, load_forecast_checkpoint
from enf.training.shape_module import ShapeModule
from enf.training.task import TaskModule

__all__ = [
    "ClassificationModule",
    "LOSSES",
    "FieldFittingModule",
    "FieldTask",
    "FitCheckpoint",
    "ForecastingModule",
    "RunArtifacts",
    "ShapeModule",
    "TaskCheckpoint",
    "TaskModule",
    "load_fit_checkpoint",
    "load_forecast_checkpoint",
    "read_checkpoint",
    "resolve_loss",
]
