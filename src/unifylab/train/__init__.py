"""Training: config, deterministic task mixtures, the loop, atomic checkpoints with exact resume, torchrun."""

from unifylab.train.config import TrainConfig, dump_config, load_config
from unifylab.train.loop import Trainer

__all__ = ["TrainConfig", "Trainer", "dump_config", "load_config"]
