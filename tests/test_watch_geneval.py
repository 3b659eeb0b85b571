"""GenEval's schema on the watch world: generated metadata round-trips, ground-truth faces score one, the wrong
faces fail for the reason GenEval's rules give, bad lines get one clear error, and the CLI and task use it."""

import json
from pathlib import Path

import numpy as np
import pytest
from test_study import Cli

from unifylab.data.geneval import generate, metadata_world, read_metadata
from unifylab.errors import UserError
from unifylab.eval.geneval import find_images, score
from unifylab.eval.task_registry import items, load_task
from unifylab.io import save_png
from unifylab.world.watch import WatchWorld
from unifylab.world.watch import geneval as WS
from unifylab.world.watch.face import WatchConfig, WatchScene, render

CONFIG = WatchConfig(size=48, minute_step=5)


def _write(tmp: Path, lines: list[dict]) -> Path:
    meta = tmp / "metadata.jsonl"
    meta.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return meta


def _face(**change: object) -> WatchScene:
    base = dict(
        size=48,
        hour=3,
        minute=40,
        face="teal",
        weather="rain",
        weather_corner="top left",
        battery=2,
        battery_corner="top right",
    )
    return WatchScene(**{**base, **change})


def test_generated_metadata_round_trips_and_ground_truth_satisfies_it(tmp_path: Path) -> None:
    items_ = generate(WatchWorld(CONFIG), 20, 0)
    assert [it.tag for it in items_] == [t for t in WS.TAGS for _ in range(20)]
    meta = _write(tmp_path, [it.to_dict() for it in items_])
    assert metadata_world(meta) == "watch"
    assert read_metadata(meta) == items_
    assert all(WS.satisfies(it.scene, it.spec).ok for it in items_)
    barred = set(WatchWorld.default_holdout)
    for it in items_:  # a free attribute never makes a held-out pair: only a prompt naming both asks for one
        held = (it.scene.weather, it.scene.face) in barred
        assert not held or it.tag == "color_attr", it


@pytest.mark.parametrize(
    "spec, face, ok, reason",
    [
        ([{"class": "bar", "count": 3}], _face(battery=3), True, ""),
        ([{"class": "bar", "count": 3}], _face(battery=2), False, "expected 3 bars, found 2"),
        ([{"class": "watch", "color": "teal", "time": "3:40"}], _face(), True, ""),
        ([{"class": "watch", "time": "3:45"}], _face(), False, "showing 3:45"),
        ([{"class": "rain"}, {"class": "battery", "position": ["right of", 0]}], _face(), True, ""),
        ([{"class": "rain"}, {"class": "battery", "position": ["below", 0]}], _face(), False, "below the rain"),
        # diagonal corners stand in two relations, as GenEval's rule gives
        (
            [{"class": "rain"}, {"class": "battery", "position": ["below", 0]}],
            _face(battery_corner="bottom right"),
            True,
            "",
        ),
        ([{"class": "sun"}], _face(), False, "expected a sun, found 0"),
    ],
)
def test_geneval_rules_on_faces(spec: list, face: WatchScene, ok: bool, reason: str) -> None:
    verdict = WS.satisfies(face, WS.WatchSpec.from_dict({"include": spec}))
    assert verdict.ok is ok
    assert ok or any(reason in r for r in verdict.reasons), verdict.reasons


def test_counting_excludes_one_more_bar() -> None:
    spec = WS.WatchSpec.from_dict(
        {"include": [{"class": "bar", "count": 2}], "exclude": [{"class": "bar", "count": 3}]}
    )
    assert WS.satisfies(_face(battery=2), spec).ok
    assert not WS.satisfies(_face(battery=4), spec).ok


def test_drawn_faces_score_one_and_shuffled_faces_score_low(tmp_path: Path) -> None:
    items_ = generate(WatchWorld(CONFIG), 15, 2)
    meta = _write(tmp_path, [it.to_dict() for it in items_])
    for it in items_:
        save_png(tmp_path / "images" / f"{it.index:05d}" / "samples" / "0000.png", render(it.scene))
    pairs, extra = find_images(tmp_path / "images", read_metadata(meta))
    result = score(pairs)
    assert result.overall.value == 1.0 and not extra and set(result.tasks) == set(WS.TAGS)
    order = np.random.default_rng(0).permutation(len(items_))
    low = score([(it, pairs[int(j)][1]) for it, j in zip(items_, order)])
    assert low.overall.value < 0.6 and all(r["reasons"] for r in low.records if not r["correct"])
    assert low.tasks["time"].value < 0.2  # 144 times: a shuffled face rarely shows the asked one


WATCH = {"name": "watch", "size": 32, "minute_step": 5}


@pytest.mark.parametrize(
    "line, message",
    [
        ({"include": [{"class": "sun"}]}, r"world: a line with watch-world classes needs"),
        ({"world": {**WATCH, "minute_step": 7}, "include": [{"class": "sun"}]}, "does not divide the hour"),
        ({"world": WATCH, "include": [{"class": "bar", "count": 0}]}, r"include\[0\].count"),
        ({"world": WATCH, "include": [{"class": "sun", "color": "red"}]}, "only the watch has a color"),
        ({"world": WATCH, "include": [{"class": "watch", "color": "pink"}]}, "unknown face colour 'pink'"),
        ({"world": WATCH, "include": [{"class": "watch", "time": "13:00"}]}, "expected a time like"),
        ({"world": WATCH, "include": [{"class": "watch", "time": "3:41"}]}, "off the 5-minute steps"),
        ({"world": WATCH, "include": [{"class": "sun", "position": ["left of", 0]}]}, "earlier include"),
        ({"world": WATCH, "include": [{"class": "dial"}]}, r"'dial' is not a class of the watch world"),
        ({"world": WATCH, "include": [{"class": "sun"}], "scene": {"world": "watch"}}, r"scene: missing"),
    ],
)
def test_bad_watch_lines_name_file_line_and_field(tmp_path: Path, line: dict, message: str) -> None:
    good = generate(WatchWorld(WatchConfig()), 1, 0, tasks=("time",))[0].to_dict()
    meta = _write(tmp_path, [good, {"prompt": "p", **line}])
    with pytest.raises(UserError, match=f"metadata.jsonl:2.*{message}"):
        read_metadata(meta)


def test_cli_writes_scores_and_draws_watch_metadata(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "wg"
    code, _, err = cli("data", "geneval", "--world", "watch", "--n-per-task", "4", "--render", "--out", out)
    assert code == 0, err
    code, stdout, err = cli(
        "score", "geneval", "--metadata", out / "metadata.jsonl", "--images", out / "images", "--json"
    )
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["judge"] == "parser" and summary["overall"]["value"] == 1.0
    code, _, err = cli(
        "generate",
        "geneval",
        "--model",
        "oracle",
        "--metadata",
        out / "metadata.jsonl",
        "--out",
        tmp_path / "drawn",
        "--samples",
        "2",
    )
    assert code == 0, err
    code, stdout, err = cli(
        "score", "geneval", "--metadata", out / "metadata.jsonl", "--images", tmp_path / "drawn", "--json"
    )
    assert code == 0 and json.loads(stdout)["images"] == 48, err


def test_watch_geneval_task_scores_oracle_fully(cli: Cli, tmp_path: Path) -> None:
    spec = load_task("watch_geneval")
    assert {it.meta["tag"] for it in items(spec, 6)} == set(WS.TAGS)
    code, _, err = cli("eval", "oracle", "--tasks", "watch_geneval", "--limit", "30", "--out", tmp_path)
    assert code == 0, err
    result = json.loads((tmp_path / "results.json").read_text())["tasks"]["watch_geneval"]
    assert result["accuracy"]["value"] == 1.0
