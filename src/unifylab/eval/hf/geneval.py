"""GenEval's two neural judges on transformers: a Mask2Former instance-segmentation detector and CLIP zero-shot
colour on the masked crop, feeding `eval.geneval_rules` (no mmdet, mmcv or open_clip needed).

The detector's raw outputs are post-processed as mmdetection's Mask2Former head does for instances (the detector
GenEval uses): class scores are the softmax without the no-object class, the 100 best (query, class) pairs are
kept, each query's mask logits are brought to the input's resized size, cropped of padding and resized to the
image, the mask is where a logit is positive, the confidence is the class score times the mask's mean probability,
and the box is the mask's extent. Colour: the image is composited over grey (#999) outside the mask, cropped to the
box, and classified among GenEval's ten colours with its three prompt templates (text embeddings normalised,
averaged over templates, normalised again; the argmax of the cosine).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from unifylab.data.geneval import OFFICIAL_COLORS as COLORS
from unifylab.data.geneval import class_key
from unifylab.eval.geneval_rules import CLIP, DETECTOR, Detection
from unifylab.eval.hf.base import quiet_transformers
from unifylab.eval.hf.loading import load_pretrained

TEMPLATES = ("a photo of a {c} {name}", "a photo of a {c}-colored {name}", "a photo of a {c} object")
GREY = (153, 153, 153)  # GenEval's background (#999) outside an object's mask


def _features(out: Any) -> torch.Tensor:
    """Projected embeddings from get_text/image_features (a tensor, or an output's pooler_output in newer versions)."""
    return out if torch.is_tensor(out) else out.pooler_output


class Mask2FormerDetector:
    """Instances per class name in an RGB image, as GenEval's detector reports them (before its thresholds)."""

    def __init__(self, source: str = DETECTOR, *, device: str = "cpu", top_k: int = 100) -> None:
        def load(src: str, local: bool) -> tuple[Any, Any]:
            from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

            model = Mask2FormerForUniversalSegmentation.from_pretrained(
                src, local_files_only=local, use_safetensors=True
            )
            return AutoImageProcessor.from_pretrained(src, local_files_only=local), model

        with quiet_transformers():
            self.processor, model = load_pretrained(source, "the detector (--detector)", load)
        self.model = model.to(device).eval()
        self.device, self.top_k = device, top_k
        cfg = self.model.config
        self.classes = [class_key(cfg.id2label[i]) for i in range(len(cfg.id2label))]

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> dict[str, list[Detection]]:
        inputs = self.processor(images=[Image.fromarray(image)], return_tensors="pt").to(self.device)
        out = self.model(pixel_values=inputs["pixel_values"], pixel_mask=inputs.get("pixel_mask"))
        height, width = image.shape[:2]
        logits = out.masks_queries_logits[0][None].float()  # [1, Q, h, w]
        padded = inputs["pixel_values"].shape[-2:]
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
        if inputs.get("pixel_mask") is not None:  # the resized image without its padding
            valid = inputs["pixel_mask"][0].bool()
            logits = logits[..., : int(valid.any(1).sum()), : int(valid.any(0).sum())]
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)[0]
        scores = out.class_queries_logits[0].float().softmax(-1)[:, :-1]  # [Q, C], no-object dropped
        n_classes = scores.shape[1]
        best, index = scores.flatten().topk(min(self.top_k, scores.numel()))
        masks = logits[index // n_classes]
        binary = masks > 0
        mask_score = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
        found: dict[str, list[Detection]] = {}
        for k, (score, label) in enumerate(zip((best * mask_score).tolist(), (index % n_classes).tolist())):
            mask = binary[k].cpu().numpy()
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            box = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1) if rows.size else (0, 0, 0, 0)
            found.setdefault(self.classes[label], []).append(Detection(tuple(map(float, box)), score, mask))
        return found


class ClipColours:
    """GenEval's colour judge: one of COLORS per detection, by CLIP zero-shot on the masked, cropped object."""

    def __init__(self, source: str = CLIP, *, device: str = "cpu") -> None:
        def load(src: str, local: bool) -> tuple[Any, Any, Any]:
            from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

            return (
                AutoTokenizer.from_pretrained(src, local_files_only=local),
                AutoImageProcessor.from_pretrained(src, local_files_only=local),
                CLIPModel.from_pretrained(src, local_files_only=local, use_safetensors=True),
            )

        with quiet_transformers():
            self.tokenizer, self.processor, model = load_pretrained(source, "the colour classifier (--clip)", load)
        self.model = model.to(device).eval()
        self.device = device
        self._classifiers: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def classifier(self, name: str) -> torch.Tensor:
        """[dim, len(COLORS)]: per colour, the normalised mean of its normalised template embeddings."""
        if name not in self._classifiers:
            columns = []
            for c in COLORS:
                texts = [t.format(c=c, name=name) for t in TEMPLATES]
                tokens = self.tokenizer(texts, padding=True, return_tensors="pt").to(self.device)
                emb = F.normalize(_features(self.model.get_text_features(**tokens)), dim=-1).mean(0)
                columns.append(emb / emb.norm())
            self._classifiers[name] = torch.stack(columns, dim=1)
        return self._classifiers[name]

    @torch.no_grad()
    def __call__(self, image: np.ndarray, detections: Sequence[Detection], name: str) -> list[str]:
        if not detections:
            return []
        crops = [crop(image, d) for d in detections]
        pixels = self.processor(images=crops, return_tensors="pt")["pixel_values"].to(self.device)
        feats = F.normalize(_features(self.model.get_image_features(pixel_values=pixels)), dim=-1)
        return [COLORS[i] for i in (feats @ self.classifier(name)).argmax(1).tolist()]


def crop(image: np.ndarray, detection: Detection) -> Image.Image:
    """The object alone: the image inside its mask, grey outside, cropped to its box (the whole image without a
    mask)."""
    picture = Image.fromarray(image)
    if detection.mask is not None:
        blank = Image.new("RGB", picture.size, GREY)
        picture = Image.composite(picture, blank, Image.fromarray(detection.mask.astype(np.uint8) * 255))
    return picture.crop(tuple(round(v) for v in detection.box))
