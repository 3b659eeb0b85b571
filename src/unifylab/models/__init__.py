"""The model family: one unified transformer with shared, fork (UniFork) and mot backbones; sampling; hub I/O."""

from unifylab.models.config import ModelConfig
from unifylab.models.generate import Sampling, generate_images, generate_text
from unifylab.models.hub import from_pretrained, load_tokenizers, save_pretrained
from unifylab.models.unified import GEN, UND, UnifiedTransformer

__all__ = [
    "GEN",
    "UND",
    "ModelConfig",
    "Sampling",
    "UnifiedTransformer",
    "from_pretrained",
    "generate_images",
    "generate_text",
    "load_tokenizers",
    "save_pretrained",
]
