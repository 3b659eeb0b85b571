"""GenEval's decision rules for real images, independent of the detector and colour classifier that feed them.

An image passes a metadata line when every `include` holds (AND) and no `exclude` holds (OR). Detections are kept
per class above a confidence (0.3; 0.9 for the `counting` tag), most confident first, at most 16 per class; an
include looks only at its class's `count` most confident detections: there must be that many, each of the
requested colour (zero-shot CLIP on the masked crop) and each in the requested relation to every object of the
include its position names. A relation holds when the box centres are apart by more than a margin of 0.1 x the
two boxes' summed size on that axis and that axis carries over half of the offset's direction. An exclude fails
the image when its class has at least `count` kept detections. These are the rules of GenEval's released
evaluator (Ghosh et al., 2023), re-implemented so that no mmdet or mmcv build is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from unifylab.data.geneval import class_key
from unifylab.world.relations import POSITION_THRESHOLD, geneval_relations


@dataclass(frozen=True)
class Rules:
    """GenEval's thresholds (its `--options` of the same names)."""

    threshold: float = 0.3  # confidence a detection needs
    counting_threshold: float = 0.9  # ... in a `counting` line
    max_objects: int = 16  # most detections kept per class
    max_overlap: float = 1.0  # IoU above which a less confident box of the class is dropped (1: keep all)
    position_threshold: float = POSITION_THRESHOLD  # margin, as a fraction of the two boxes' summed size


GENEVAL = Rules()  # the released evaluator's defaults
DETECTOR = "facebook/mask2former-swin-small-coco-instance"  # Mask2Former Swin-S on COCO instances, as in GenEval
CLIP = "openai/clip-vit-large-patch14"  # GenEval's colour judge, ViT-L-14 with OpenAI's weights


@dataclass(frozen=True)
class Detection:
    """One detected instance: box (x0, y0, x1, y1) in pixels, confidence, and its mask (H x W bool) if any."""

    box: tuple[float, float, float, float]
    score: float
    mask: np.ndarray | None = None


# colours(image, detections, class name) -> one of data.geneval.OFFICIAL_COLORS per detection
ColorFn = Callable[[np.ndarray, Sequence[Detection], str], list[str]]


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes with GenEval's inclusive pixel areas ((x1 - x0 + 1) x ...)."""

    def area(x0: float, y0: float, x1: float, y1: float) -> float:
        return max(x1 - x0 + 1, 0) * max(y1 - y0 + 1, 0)

    inter = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    union = area(*a[:4]) + area(*b[:4]) - inter
    return inter / union if union else 0.0


def keep(detections: dict[str, list[Detection]], *, tag: str, rules: Rules = GENEVAL) -> dict[str, list[Detection]]:
    """Per class: detections above the line's confidence, most confident first, at most `max_objects`, each box
    overlapping a kept more confident one by at most `max_overlap`; classes left empty are dropped."""
    floor = rules.counting_threshold if tag == "counting" else rules.threshold
    kept: dict[str, list[Detection]] = {}
    for name, dets in detections.items():
        ranked = sorted((d for d in dets if d.score > floor), key=lambda d: -d.score)[: rules.max_objects]
        chosen: list[Detection] = []
        for d in ranked:
            if rules.max_overlap >= 1 or all(box_iou(d.box, c.box) < rules.max_overlap for c in chosen):
                chosen.append(d)
        if chosen:
            kept[name] = chosen
    return kept


def relations(a: Sequence[float], b: Sequence[float], *, margin: float = POSITION_THRESHOLD) -> set[str]:
    """Where box `a` (x0, y0, x1, y1) lies relative to box `b`: a subset of world.language.RELATIONS."""
    boxes = np.asarray([a[:4], b[:4]], dtype=np.float64).reshape(2, 2, 2)
    centre_a, centre_b = boxes.mean(axis=1)
    size_a, size_b = np.abs(boxes[:, 1] - boxes[:, 0])
    return geneval_relations(centre_a, centre_b, size_a + size_b, margin)


def judge(
    image: np.ndarray,
    detected: dict[str, list[Detection]],
    line: dict[str, Any],
    *,
    colours: ColorFn,
    rules: Rules = GENEVAL,
) -> tuple[bool, list[str]]:
    """Whether an image with these kept detections (`keep`, keyed by `class_key`) satisfies a metadata line, and
    why not."""
    correct, reasons = True, []
    groups: list[list[Detection] | None] = []  # the detections each include matched, None where it failed
    for req in line.get("include", []):
        name, count = class_key(req["class"]), req["count"]
        found = detected.get(name, [])[:count]
        ok = len(found) >= count
        if not ok:
            reasons.append(f"needs {count} {name}, found {len(found)}")
        if ok and "color" in req:
            seen = colours(image, found, name)
            if seen.count(req["color"]) < count:
                ok = False
                reasons.append(f"needs {count} {req['color']} {name}, the colours read are {', '.join(seen)}")
        if ok and "position" in req:
            relation, target = req["position"]
            anchors = groups[target]
            if anchors is None:
                ok = False
                reasons.append(f"{name} should be {relation} include {target}, which was not found")
            else:
                held_all = (relations(o.box, t.box, margin=rules.position_threshold) for o in found for t in anchors)
                miss = next((held for held in held_all if relation not in held), None)
                if miss is not None:
                    ok = False
                    where_it_is = " and ".join(sorted(miss)) or "within the margin of it"
                    reasons.append(f"{name} should be {relation} include {target}; it is {where_it_is}")
        groups.append(found if ok else None)
        correct = correct and ok
    for req in line.get("exclude", []):
        name, count = class_key(req["class"]), req["count"]
        n = len(detected.get(name, []))
        if n >= count:
            correct = False
            reasons.append(f"needs fewer than {count} {name}, found {n}")
    return correct, reasons
