"""An open vision-language judge: any transformers image-text-to-text model (Qwen2.5-VL, LLaVA, ...) answering
RealUnify's verification questions about a drawing, through the protocol's `generate_text` (greedy, batched,
left-padded, the model's own chat template)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unifylab.errors import UserError
from unifylab.eval.hf.base import quiet_transformers
from unifylab.eval.hf.loading import load_pretrained
from unifylab.eval.protocol import TextRequest

INSTRUCTION = "Look at the image and answer the question with one word, yes or no.\nQuestion: {question}"


class HFJudge:
    """A transformers image-text-to-text model that answers questions about images; text-only requests are refused
    (a judge always looks at a drawing)."""

    def __init__(self, source: str, *, device: str = "cpu", batch: int = 8, max_tokens: int = 8) -> None:
        def load(src: str, local: bool) -> tuple[Any, Any]:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
            model = AutoModelForImageTextToText.from_pretrained(
                src, local_files_only=local, use_safetensors=True, dtype=dtype
            )
            return AutoProcessor.from_pretrained(src, local_files_only=local), model

        with quiet_transformers():
            self.processor, model = load_pretrained(source, "the judge (hf-vlm)", load)
        self.processor.tokenizer.padding_side = "left"  # batched greedy decoding continues every row at its end
        self.model = model.to(device).eval()
        self.device, self.batch, self.max_tokens = device, batch, max_tokens
        self.name = f"hf-vlm:{Path(source.rstrip('/')).name or source}"
        self.fingerprint = {
            "source": str(Path(source).expanduser().resolve()) if Path(source).expanduser().is_dir() else source,
            "max_tokens": max_tokens,
        }

    @torch.no_grad()
    def generate_text(self, requests: list[TextRequest]) -> list[str]:
        if any(r.image is None for r in requests):
            raise UserError(f"{self.name}: a judge answers questions about an image; a request came without one")
        replies: list[str] = []
        for start in range(0, len(requests), self.batch):
            chunk = requests[start : start + self.batch]
            chats = [
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image"},
                            {"type": "text", "text": INSTRUCTION.format(question=r.prompt)},
                        ],
                    }
                ]
                for r in chunk
            ]
            text = self.processor.apply_chat_template(chats, add_generation_prompt=True)
            images = [Image.fromarray(np.asarray(r.image, dtype=np.uint8)).convert("RGB") for r in chunk]
            inputs = self.processor(images=images, text=text, return_tensors="pt", padding=True).to(self.device)
            with quiet_transformers():
                out = self.model.generate(**inputs, max_new_tokens=self.max_tokens, do_sample=False)
            new = out[:, inputs["input_ids"].shape[1] :]
            replies += [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]
        return replies
