"""s4l_models: ResNets, datasets and splits, methods and the trainer of s4l-tune."""

from .config import TrainConfig
from .errors import UserError
from .methods import get_method, list_methods
from .resnet import create_model, list_models

__all__ = ["TrainConfig", "UserError", "create_model", "get_method", "list_methods", "list_models"]
