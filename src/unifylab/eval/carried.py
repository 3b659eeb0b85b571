"""A finished run whose weights were left behind (a study folder copied without them, to move its results between
machines): the eval records stamped with its weights still answer for it, and anything new it is asked is one
clear error instead of a retraining."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

from unifylab.errors import UserError
from unifylab.eval.native import recipe
from unifylab.io import read_json
from unifylab.layout import EvalFolder
from unifylab.models.hub import WEIGHTS, read_model_config


class CarriedRun:
    """Stands in for a run folder without model.safetensors: its fingerprint is the one its records were stamped
    with (the weights' digest that every task stamp of the run names, the sampling settings its config gives), so
    the harness reuses them; a task or analysis not yet made raises a UserError naming the missing weights."""

    def __init__(self, folder: Path, records: Path, *, temperature: float) -> None:
        self.folder, self.name, self.world = Path(folder), Path(folder).name, None
        cfg = read_model_config(self.folder)
        digests = {_weights_of(s) for s in EvalFolder(Path(records)).stamps()} - {None}
        if len(digests) != 1:
            self._gone(
                "no eval records stamped with its weights"
                if not digests
                else f"eval records stamped by {len(digests)} different weights in {records}"
            )
        self.fingerprint = recipe(cfg, digests.pop(), guidance=cfg.guidance, temperature=temperature, top_k=0, seed=0)

    def _gone(self, what: str) -> NoReturn:
        raise UserError(
            f"{self.folder / WEIGHTS}: missing, and the run has {what}; copy the run's model.safetensors back, or "
            "delete its run folder so the study trains it again"
        )

    def generate_text(self, requests: list[Any]) -> NoReturn:
        self._gone("text answers still to make")

    def loglikelihood(self, requests: list[Any]) -> NoReturn:
        self._gone("loglikelihoods still to score")

    def generate_images(self, requests: list[Any]) -> NoReturn:
        self._gone("images still to draw")

    def hidden_states(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._gone("analyses still to run")


def _weights_of(stamp: Path) -> str | None:
    """The weights' digest a task stamp names (None for one made by another kind of model, or unreadable)."""
    try:
        model = read_json(stamp).get("model", {})
    except (UserError, AttributeError):
        return None
    return model.get("weights") if isinstance(model, dict) else None
