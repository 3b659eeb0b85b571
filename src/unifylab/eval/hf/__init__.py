"""Published unified models from Hugging Face `transformers` (Janus, Emu3) behind unifylab's model protocol, so the
same evaluations and analyses that run on lab models run on them.

Every input goes through the model's own processor (chat template, image resize and normalisation) and every image
is drawn by the model's own generation path (classifier-free guidance, then its VQ decoder). Requests are processed
in batches of `batch`, left-padded: text generation, loglikelihoods, hidden states and image generation alike.
Sequences are built from the chat template with marks where the question and the answer go, and content tokens are
found by comparing the processor's tokens with and without each piece, so the masks follow the model's exact input.
"""

from unifylab.eval.hf.base import FAMILIES
from unifylab.eval.hf.emu3 import HFEmu3
from unifylab.eval.hf.janus import HFJanus
from unifylab.eval.hf.loading import load_hf

__all__ = ["FAMILIES", "HFEmu3", "HFJanus", "load_hf"]
