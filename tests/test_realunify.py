import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from unifylab.errors import UserError
from unifylab.eval.protocol import ImageRequest, ParserJudge, TextRequest
from unifylab.eval.realunify import load_realunify, parse_yes_no, run_realunify, summarise_realunify
from unifylab.eval.tasks import parse_letter
from unifylab.world import Obj, Scene, render

FIXTURE = Path(__file__).parent / "fixtures" / "realunify" / "realunify_small.json"
Cli = Callable[..., tuple[int, str, str]]


class Scripted:
    """A test double that draws a fixed scene per prompt and gives fixed replies per question."""

    name = "scripted"

    def __init__(self, drawings: dict[str, Scene], replies: dict[str, str]) -> None:
        self.drawings, self.replies = drawings, replies

    def generate_images(self, requests: list[ImageRequest]) -> list[np.ndarray]:
        return [render(self.drawings.get(r.prompt, Scene(32, 3))) for r in requests]

    def generate_text(self, requests: list[TextRequest]) -> list[str]:
        return [next((v for k, v in self.replies.items() if r.prompt.startswith(k)), "") for r in requests]

    def loglikelihood(self, requests: list) -> list[float]:
        return [0.0 for _ in requests]


def test_loader_reads_both_kinds() -> None:
    items = load_realunify(FIXTURE)
    assert [it.kind for it in items] == ["ueg"] * 3 + ["geu"] * 3
    assert items[0].questions[0] == {"question": "is there a yellow circle at row 1, column 1?", "answer": "yes"}
    assert items[4].options == ["red", "green", "blue", "white"] and items[4].answer == "B"
    assert items[5].options is None and items[5].images[0].is_file()


def test_answer_parsing_avoids_the_reference_flaws() -> None:
    assert parse_yes_no("Nothing is there, I know.") is None
    assert parse_yes_no("No, there is nothing.") == "no" and parse_yes_no("Yes.") == "yes"
    assert parse_letter("A cat is in row 1.") is None and parse_letter("A") == "A"
    assert parse_letter("The answer is (C).") == "C"


def test_scoring_on_the_fixture_with_the_exact_judge(tmp_path: Path) -> None:
    items = load_realunify(FIXTURE)
    drawings = {
        "draw the sun at row 1, column 1.": Scene(32, 3, (Obj("circle", "yellow", 0, 0),)),  # right
        "draw as many red squares as 1 plus 1, in row 2 from the left.": Scene(
            32, 3, (Obj("square", "red", 1, 0),)
        ),  # one square short
        "draw a ring in the colour of red light mixed with green light at row 3, column 3.": Scene(
            32, 3, (Obj("ring", "yellow", 2, 2),)
        ),  # right
    }
    replies = {"move the red circle": "A", "what colour": "A cat would say B", "where is the green": "the answer is A"}
    recs = run_realunify(Scripted(drawings, replies), ParserJudge(3), items, tmp_path)
    assert [r["score"] for r in recs] == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert "row 2, column 2" in recs[1]["reasons"][0]
    s = summarise_realunify(recs)
    assert s["overall"]["value"] == pytest.approx(4 / 6) and s["directions"]["ueg"]["value"] == pytest.approx(2 / 3)
    assert s["task_types"]["mathematical_reasoning"]["value"] == 0.0 and len(s["task_types"]) == 6
    assert (tmp_path / "realunify.jsonl").is_file() and (tmp_path / "images" / "0.png").is_file()


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"task_type": "x", "question": "q", "answer": "E"}]))
    with pytest.raises(UserError, match="letter A-D"):
        load_realunify(bad)
    bad.write_text(json.dumps([{"task_type": "x", "question": "q", "answer": "A", "image": "nope.png"}]))
    with pytest.raises(UserError, match="nope.png not found"):
        load_realunify(bad)
    bad.write_text(json.dumps([{"prompt": "p"}]))
    with pytest.raises(UserError, match="task_type"):
        load_realunify(bad)


def test_score_realunify_command(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("score", "realunify", "--data", FIXTURE, "--model", "random", "--out", tmp_path / "r")
    assert code == 0, err
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["judge"] == "parser" and res["overall"]["n"] == 6
    code, _, err = cli("score", "realunify", "--data", FIXTURE, "--model", "random", "--out", tmp_path / "r")
    assert code == 2 and "--force" in err
