"""Models: encoders, RAMER, baselines (AE, CRA, MMIN, IF-MMIN, CIF-MMIN), CARAT, NMER."""

from pipeline.models.base import Batch, MERModel, ModelSpec, Output, task_loss
from pipeline.models.registry import create_model, list_models, register_model

__all__ = [
    "Batch",
    "MERModel",
    "ModelSpec",
    "Output",
    "create_model",
    "list_models",
    "register_model",
    "task_loss",
]
