"""The transfer design on the watch world: turning the hands on by an offset is taught on one side only, no side
sees an offset taught only on the other, probe items split by where their offset was taught, and the study runs."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from test_study import Cli
from test_transfer import run_tiny_transfer

from unifylab.data.forms import UND_TASKS
from unifylab.data.splits import is_eval_scene
from unifylab.errors import UserError
from unifylab.eval.harness import split_of
from unifylab.eval.task_registry import items, load_task
from unifylab.study.preset import load_preset
from unifylab.tokenize.sequence import Packer
from unifylab.train.build import build_tokenizers
from unifylab.train.config import load_tree
from unifylab.train.data import Batches, SceneSource
from unifylab.world.watch import language as WL

OFFSET = re.compile(r"(\d+) minutes later")


def _cfg(**data: object):
    base = load_preset("transfer-watch").base
    return load_tree({**base, "data": {**base["data"], **data}})


def test_no_side_sees_an_offset_the_other_side_alone_was_taught() -> None:
    cfg = _cfg()
    text, und, gen = build_tokenizers(cfg)
    batches = Batches(cfg, Packer(text, und, gen), SceneSource(cfg))
    idx = np.arange(3000)
    samples = batches.samples("train", idx, batches.task_of(idx))
    sides = {side: {k for k, s in cfg.data.moves.items() if s in (side, "both")} for side in ("und", "gen")}
    seen: dict[str, set[str]] = {"und": set(), "gen": set()}
    for it in samples:
        side = "und" if it.task in UND_TASKS else "gen"
        said = {f"{m} minutes" for m in OFFSET.findall(it.text)}
        assert said <= sides[side], f"{it.task} names an offset not taught on the {side} side: {it.text!r}"
        seen[side] |= said
        if it.task == "move_to":
            assert not said and it.text == WL.set_instruction(it.scene.time) and it.scene != it.source
        if it.task in ("move_ask", "move_draw", "move_to"):
            before = it.scene if it.task == "move_ask" else it.source
            assert not is_eval_scene(before)
            if it.task == "move_ask":
                assert it.answer == WL.shifted(before, int(OFFSET.search(it.text).group(1))).time
            else:
                assert not is_eval_scene(it.scene)
                assert (it.scene.face, it.scene.weather, it.scene.battery) == (
                    it.source.face,
                    it.source.weather,
                    it.source.battery,
                )
    assert seen == sides  # every offset taught on a side is taught there
    assert {it.task for it in samples} >= {"move_ask", "move_draw", "move_to", "caption", "vqa", "t2i"}


def test_probe_items_split_by_where_their_offset_was_taught() -> None:
    cfg = _cfg()
    ask, draw = load_task("watch_later_ask"), load_task("watch_later_draw_stepwise")
    by_ask = {it.meta["move"]: split_of({"id": it.id, "meta": it.meta}, ask, cfg.data) for it in items(ask)}
    by_draw = {it.meta["move"]: split_of({"id": it.id, "meta": it.meta}, draw, cfg.data) for it in items(draw)}
    assert by_ask["15 minutes"] == by_draw["15 minutes"] == "both"
    assert by_ask["10 minutes"] == "here" and by_draw["10 minutes"] == "transfer"
    assert by_ask["20 minutes"] == "transfer" and by_draw["20 minutes"] == "here"
    assert by_ask["25 minutes"] == by_draw["25 minutes"] == "none"
    assert all(is_eval_scene(WL.WatchScene.from_dict(it.meta["scene"])) for it in items(ask))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"moves": {"right": "both"}}, r"unknown skill\(s\) \['right'\] on the 32 px watch world"),
        ({"moves": {"7 minutes": "both"}}, r"unknown skill\(s\) \['7 minutes'\]"),
        ({"moves": {"10 minutes": "und"}}, "move_draw.*teaches no skill"),
    ],
)
def test_bad_watch_designs_fail_at_load(data: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        _cfg(**data)


def test_transfer_watch_study_end_to_end_at_tiny_size(cli: Cli, tmp_path: Path) -> None:
    out = run_tiny_transfer(cli, tmp_path, "transfer-watch", limit=22)
    shared = json.loads((out / "results.json").read_text())["transfer"]["all"]["shared"]
    assert shared["watch_later_ask"]["direction"] == "GEU" and shared["watch_later_draw"]["direction"] == "UEG"
    assert all(shared["watch_later_ask"][k] is not None for k in ("ceiling", "here", "transfer", "floor"))
    assert "## Transfer" in (out / "report.md").read_text()
