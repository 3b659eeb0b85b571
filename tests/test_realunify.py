import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from unifylab.errors import UserError
from unifylab.eval.protocol import ImageRequest, ParserJudge, TextRequest
from unifylab.eval.realunify import (
    load_realunify,
    parse_yes_no,
    released_letter,
    released_yes_no,
    run_realunify,
    summarise_realunify,
)
from unifylab.eval.scorers import parse_letter
from unifylab.world.shapes.canvas import ShapesConfig, render
from unifylab.world.shapes.scene import Obj, Scene

FIXTURE = Path(__file__).parent / "fixtures" / "realunify" / "realunify_small.json"
SHAPES = ShapesConfig(size=32, grid=3)  # the canvas the fixture's drawings and the parser judge share
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
    recs = run_realunify(Scripted(drawings, replies), ParserJudge(SHAPES), items, tmp_path, world=SHAPES)
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


def test_released_parsing_reproduces_the_scorers_flaws_and_is_reported_beside_the_strict_one(tmp_path: Path) -> None:
    assert released_yes_no("Yes, I know it is there.") == "no" and parse_yes_no("Yes, I know it is there.") == "yes"
    assert released_yes_no("YES") == "yes" and released_yes_no("maybe") == "maybe"
    assert released_letter("A cat would say B") == "A" and parse_letter("A cat would say B") is None
    assert released_letter("The answer is C") == "C" and released_letter("none") == ""
    items = load_realunify(FIXTURE)[:1]  # the sun: two questions, expected yes then no
    verbose = Scripted({}, {"is there a yellow": "Yes, I know it is there.", "is there anything": "No."})
    drawn = Scripted({"draw the sun at row 1, column 1.": Scene(32, 3, (Obj("circle", "yellow", 0, 0),))}, {})
    recs = run_realunify(drawn, verbose, items, tmp_path, world=SHAPES)
    assert recs[0]["score"] == 1.0 and recs[0]["score_released"] == 0.0
    strict, released = summarise_realunify(recs), summarise_realunify(recs, released=True)
    assert strict["overall"]["value"] == 1.0 and strict["overall_released_parsing"]["value"] == 0.0
    assert released["parsing"] == "released" and released["overall"]["value"] == 0.0
    assert strict["released_minus_strict"]["value"] == -1.0 and strict["items_parsed_differently"] == 1


class Counting(Scripted):
    """A judge that counts the questions it is asked."""

    def __init__(self) -> None:
        super().__init__({}, {"": "yes"})
        self.asked = 0

    def generate_text(self, requests: list[TextRequest]) -> list[str]:
        self.asked += len(requests)
        return super().generate_text(requests)


def test_judge_replies_are_cached_so_a_rerun_asks_nothing(tmp_path: Path) -> None:
    items, judge = load_realunify(FIXTURE), Counting()
    model = Scripted({}, {})
    first = run_realunify(model, judge, items, tmp_path, world=SHAPES)
    n = judge.asked
    assert n == sum(len(it.questions) for it in items if it.kind == "ueg")
    again = run_realunify(model, judge, items, tmp_path, world=SHAPES)
    assert judge.asked == n and [r["score"] for r in again] == [r["score"] for r in first]
    other = Counting()
    other.name = "another judge"  # a different judge is asked afresh
    run_realunify(model, other, items, tmp_path, world=SHAPES)
    assert other.asked == n


def tiny_vlm(folder: Path) -> Path:
    """A random LLaVA (tiny CLIP vision tower, tiny Llama) with a word-level tokenizer and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    words = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "yes", "no", "user:", "assistant:"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},  # so the processor's repeated image tokens split apart
    )
    template = (
        "{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
        "{% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}{% if add_generation_prompt %}assistant: "
        "{% endif %}"
    )
    images = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=fast,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=template,
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    vision = {"model_type": "clip_vision_model", "image_size": 16, "patch_size": 8, "hidden_size": 16}
    vision |= {"intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    text = {"model_type": "llama", "vocab_size": len(words), "hidden_size": 16, "intermediate_size": 32}
    text |= {"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 64}
    text |= {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    torch.manual_seed(0)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=4, vision_feature_layer=-1)
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_score_realunify_with_an_open_vlm_judge(cli: Cli, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    judge = f"hf-vlm:{tiny_vlm(tmp_path / 'vlm')}"
    args = ("score", "realunify", "--data", FIXTURE, "--model", "random", "--judge", judge, "--out", tmp_path / "r")
    code, _, err = cli(*args)
    assert code == 0, err
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["judge"] == judge and res["parsing"] == "strict" and res["directions"]["ueg"]["n"] == 3
    asked = sum(len(it.questions) for it in load_realunify(FIXTURE))  # every verification question, once
    assert len((tmp_path / "r" / "judge-replies.jsonl").read_text().splitlines()) == asked
    code, _, err = cli(*args, "--force", "--compat")
    assert code == 0, err
    assert len((tmp_path / "r" / "judge-replies.jsonl").read_text().splitlines()) == asked  # nothing asked again
    assert json.loads((tmp_path / "r" / "results.json").read_text())["parsing"] == "released"
    code, _, err = cli(
        "score", "realunify", "--data", FIXTURE, "--model", "oracle", "--judge", "hf-vlm:", "--out", tmp_path / "x"
    )
    assert code == 2 and "after the colon" in err
