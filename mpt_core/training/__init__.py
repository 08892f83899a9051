"""Training: trainer, its config and the learning-rate schedule."""

from .config import TrainConfig
from .trainer import TrainResult, embed_examples, evaluate, fit, seed_everything

__all__ = ["TrainConfig", "TrainResult", "embed_examples", "evaluate", "fit", "seed_everything"]
