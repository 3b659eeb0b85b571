"""Turning text and images into model inputs: text BPE, image tokenizers (vq, patch; each world's exact one lives
with its world), sequence packing."""

from unifylab.tokenize.image import ImageTokenizer, load_image_tokenizer
from unifylab.tokenize.patch import PatchTokenizer
from unifylab.tokenize.sequence import DEFAULT_LOSS_ON, IGNORE, IMAGE, TEXT, Example, Packed, Packer, VocabLayout
from unifylab.tokenize.text import SPECIAL_TOKENS, TextTokenizer, world_corpus
from unifylab.tokenize.vq import VQConfig, VQTokenizer

__all__ = [
    "DEFAULT_LOSS_ON",
    "IGNORE",
    "IMAGE",
    "SPECIAL_TOKENS",
    "TEXT",
    "Example",
    "ImageTokenizer",
    "Packed",
    "Packer",
    "PatchTokenizer",
    "TextTokenizer",
    "VQConfig",
    "VQTokenizer",
    "VocabLayout",
    "load_image_tokenizer",
    "world_corpus",
]
