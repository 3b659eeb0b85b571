"""The blind baseline: the best a model can do without looking, estimated on a run's own training data.

Understanding: the answer given most often in training to the same question, else to questions of the same template
(the world's attribute words masked), else to any question; a multiple-choice prompt picks the option that answer
favours. Generation: the most common training image, whatever the prompt. A task that a trained model does not beat
by a clear margin is answered from priors, not from the image (or the prompt).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from unifylab.errors import UserError
from unifylab.eval.protocol import ImageRequest, LoglikelihoodRequest, TextRequest
from unifylab.eval.task_registry import TaskSpec
from unifylab.train.config import TrainConfig
from unifylab.train.data import SceneSource
from unifylab.world import CAPTION_QUESTION, describe_canvas

_MC = re.compile(r"^(.*) A\. (.*) B\. (.*) C\. (.*) D\. (.*) answer with a letter\.$")


def template(question: str, words: re.Pattern[str]) -> str:
    """The question with its attribute `words` masked: 'is there a red ring?' -> 'is there a _ _?'."""
    return words.sub("_", question)


class BlindModel:
    """Answers from the question alone and draws the modal training scene; see the module docstring."""

    name = "blind"

    def __init__(self, cfg: TrainConfig, n: int = 20_000) -> None:
        source = SceneSource(cfg)
        world = self.source_world = source.world
        self.words = re.compile(r"\b(" + ("|".join(map(re.escape, world.attribute_words)) or "(?!)") + r")\b")
        self.by_question: dict[str, Counter[str]] = {}
        self.by_template: dict[str, Counter[str]] = {}
        self.overall: Counter[str] = Counter()
        captions: Counter[str] = Counter()
        scenes: Counter[str] = Counter()
        keep: dict[str, Any] = {}
        for i in range(n):
            scene, _, rng = source.get("train", i)
            qa = world.sample_qa(scene, rng)
            for table, key in ((self.by_question, qa.question), (self.by_template, template(qa.question, self.words))):
                table.setdefault(key, Counter())[qa.answer] += 1
            self.overall[qa.answer] += 1
            captions[world.caption(scene, rng)] += 1
            key = repr(scene.to_dict())
            scenes[key] += 1
            keep.setdefault(key, scene)
        self.caption = captions.most_common(1)[0][0]
        self.scene = keep[scenes.most_common(1)[0][0]]
        self.fingerprint = {
            "name": self.name,
            "n": n,
            "world": cfg.world.model_dump(mode="json"),
            "data": cfg.data.model_dump(mode="json", include={"seed", "holdout_pairs", "n_scenes", "source", "folder"}),
        }

    def _prior(self, question: str) -> Counter[str]:
        return self.by_question.get(question) or self.by_template.get(template(question, self.words)) or self.overall

    def _answer(self, prompt: str) -> str:
        if prompt == CAPTION_QUESTION:
            return self.caption
        mc = _MC.match(prompt)
        if mc is None:
            return self._prior(prompt).most_common(1)[0][0]
        prior = self._prior(mc.group(1))
        options = list(mc.groups()[1:])
        best = max(range(4), key=lambda k: (prior.get(options[k], 0), -k))
        return "ABCD"[best]

    def generate_text(self, requests: list[TextRequest]) -> list[str]:
        return [self._answer(r.prompt) for r in requests]

    def loglikelihood(self, requests: list[LoglikelihoodRequest]) -> list[float]:
        raise UserError("the blind baseline answers by generation only (no loglikelihood tasks)")

    def generate_images(self, requests: list[ImageRequest]) -> list[np.ndarray]:
        out = []
        for r in requests:
            asked = r.world.canvas
            if asked != self.source_world.config.canvas:
                raise UserError(
                    f"blind baseline: an image request for the {describe_canvas(asked)}, but its training world is "
                    f"the {self.source_world.config.describe()}"
                )
            out.append(self.source_world.render(self.scene))
        return out


def blind_summaries(
    cfg: TrainConfig, specs: list[TaskSpec], out: Path, limit: int | None, *, force: bool = False
) -> dict[str, dict[str, Any]]:
    """Score the blind baseline of `cfg`'s training data on every task (records in `out`, resumable)."""
    from unifylab.eval.harness import run_task, summarise

    model = BlindModel(cfg)
    return {s.name: summarise(s, run_task(model, s, out, limit=limit, force=force), cfg.data) for s in specs}
