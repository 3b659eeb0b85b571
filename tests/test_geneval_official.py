"""GenEval's official decision rules on hand-made detections, and its judges on tiny random transformers models."""

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unifylab.data.geneval import check_classes, class_key, metadata_world, read_official
from unifylab.errors import UserError
from unifylab.eval.geneval_rules import Detection, Rules, judge, keep, relations
from unifylab.io import save_png

Cli = Callable[..., tuple[int, str, str]]


def box(x0: float, y0: float, side: float = 10) -> tuple[float, float, float, float]:
    return (x0, y0, x0 + side, y0 + side)


def dets(*scores: float, at: Sequence[tuple[float, float]] = ()) -> list[Detection]:
    places = list(at) or [(20 * k, 0) for k in range(len(scores))]
    return [Detection(box(*p), s) for s, p in zip(scores, places)]


def colours_of(*names: str) -> Callable[..., list[str]]:
    """A colour judge that reads `names` for the detections in order."""
    return lambda image, found, name: list(names[: len(found)])


IMAGE = np.zeros((64, 64, 3), np.uint8)


def test_relative_position_needs_the_margin_and_half_the_direction() -> None:
    # two 10 px boxes side by side: the margin is 0.1 x (10 + 10) = 2 px, and the part of the offset beyond it must
    # be over half the offset, so "left of" needs the centres more than 4 px apart
    assert relations(box(0, 0), box(4, 0)) == set()
    assert relations(box(0, 0), box(4.01, 0)) == {"left of"}
    assert relations(box(10, 0), box(0, 0)) == {"right of"}
    assert relations(box(0, 0), box(0, 2)) == set()  # inside the margin: no relation at all
    assert relations(box(0, 30), box(0, 0)) == {"below"}  # image y grows downwards
    assert relations(box(0, 0), box(20, 20)) == {"left of", "above"}  # a diagonal holds both
    assert relations(box(0, 0), box(4.01, 0), margin=0.3) == set()  # a wider margin


def test_keep_thresholds_sorts_and_caps_per_class() -> None:
    found = {"dog": dets(0.31, 0.95, 0.3, 0.89), "cat": dets(0.2)}
    kept = keep(found, tag="two_object")
    assert [d.score for d in kept["dog"]] == [0.95, 0.89, 0.31] and "cat" not in kept  # 0.3 itself is not above
    assert [d.score for d in keep(found, tag="counting")["dog"]] == [0.95]  # counting asks for 0.9
    many = {"dog": dets(*[0.5 + k / 100 for k in range(20)])}
    assert len(keep(many, tag="single_object")["dog"]) == 16
    overlapping = {"dog": dets(0.9, 0.8, at=[(0, 0), (1, 0)])}
    assert len(keep(overlapping, tag="x")["dog"]) == 2  # GenEval keeps overlapping boxes by default
    assert len(keep(overlapping, tag="x", rules=Rules(max_overlap=0.5))["dog"]) == 1


def test_counting_with_an_exclude() -> None:
    line = {"tag": "counting", "include": [{"class": "dog", "count": 3}], "exclude": [{"class": "dog", "count": 4}]}
    none = colours_of()
    three = keep({"dog": dets(0.95, 0.97, 0.99)}, tag="counting")
    assert judge(IMAGE, three, line, colours=none) == (True, [])
    four = keep({"dog": dets(0.95, 0.97, 0.99, 0.93)}, tag="counting")
    ok, reasons = judge(IMAGE, four, line, colours=none)
    assert not ok and reasons == ["needs fewer than 4 dog, found 4"]
    unsure_fourth = keep({"dog": dets(0.95, 0.97, 0.99, 0.85)}, tag="counting")  # below counting's 0.9
    assert judge(IMAGE, unsure_fourth, line, colours=none)[0]
    two = keep({"dog": dets(0.95, 0.97)}, tag="counting")
    assert judge(IMAGE, two, line, colours=none) == (False, ["needs 3 dog, found 2"])


def test_colour_is_read_on_the_most_confident_objects_only() -> None:
    line = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]}
    cars = keep({"car": dets(0.9, 0.8)}, tag="colors")  # the judge reads the 0.9 car first
    assert not judge(IMAGE, cars, line, colours=colours_of("blue", "red"))[0]
    assert judge(IMAGE, cars, line, colours=colours_of("red", "blue"))[0]
    two_red = {"tag": "colors", "include": [{"class": "car", "count": 2, "color": "red"}]}
    ok, reasons = judge(IMAGE, cars, two_red, colours=colours_of("red", "blue"))
    assert not ok and "red, blue" in reasons[0]


def test_position_is_checked_against_every_object_of_the_anchor() -> None:
    line = {
        "tag": "position",
        "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1, "position": ["right of", 0]}],
    }
    cat = dets(0.9, at=[(0, 0)])
    assert judge(IMAGE, {"cat": cat, "dog": dets(0.9, at=[(30, 0)])}, line, colours=colours_of())[0]
    ok, reasons = judge(IMAGE, {"cat": cat, "dog": dets(0.9, at=[(2, 0)])}, line, colours=colours_of())
    assert not ok and "within the margin" in reasons[0]
    ok, reasons = judge(IMAGE, {"dog": dets(0.9, at=[(30, 0)])}, line, colours=colours_of())
    assert not ok and reasons == ["needs 1 cat, found 0", "dog should be right of include 0, which was not found"]


def test_official_metadata_is_read_and_checked(tmp_path: Path) -> None:
    coco = tmp_path / "coco.jsonl"
    lines = [
        {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
        {
            "tag": "position",
            "include": [{"class": "cow", "count": 1}, {"class": "bench", "count": 1, "position": ["above", 0]}],
            "prompt": "a photo of a bench above a cow",
        },
    ]
    coco.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert metadata_world(coco) == "coco"
    read = read_official(coco)
    assert [(r.index, r.tag) for r in read] == [(0, "single_object"), (1, "position")]
    with pytest.raises(UserError, match="'cow' is not a class the detector knows"):
        check_classes(read_official(coco), ["bench", "dog"])
    check_classes(read, ["Bench", "cow"])  # spellings of one class agree
    assert class_key("Hair_Drier") == class_key("hair-drier") == class_key(" hair  drier") == "hair drier"
    bad = tmp_path / "bad.jsonl"
    for line, needle in [
        ({"prompt": "x", "include": [{"class": "dog", "count": 0}]}, "count"),
        ({"prompt": "x", "include": [{"class": "dog", "count": 1, "color": "teal"}]}, "'teal'"),
        ({"prompt": "x", "include": [{"class": "dog", "count": 1, "position": ["above", 0]}]}, "earlier include"),
    ]:
        bad.write_text(json.dumps(line) + "\n")
        with pytest.raises(UserError, match=needle):
            read_official(bad)
    shapes = tmp_path / "shapes.jsonl"
    shapes.write_text(json.dumps({"prompt": "a red circle", "include": [{"class": "circle", "count": 1}]}) + "\n")
    assert metadata_world(shapes) == "shapes"


# ---------------------------------------------------------------------------------------------- tiny judges

LABELS = ["dog", "cat", "bench"]


def tiny_detector(folder: Path) -> Path:
    """A random Mask2Former (tiny Swin backbone) with its image processor, saved like a hub checkpoint."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
    from transformers.models.mask2former import Mask2FormerImageProcessorPil

    swin = SwinConfig(
        image_size=64,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    cfg = Mask2FormerConfig(
        backbone_config=swin,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=32,
        num_queries=8,
        id2label=dict(enumerate(LABELS)),
        label2id={n: i for i, n in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    Mask2FormerForUniversalSegmentation(cfg).save_pretrained(folder)
    processor = Mask2FormerImageProcessorPil(
        size={"shortest_edge": 64, "longest_edge": 64}, size_divisor=32, pad_size={"height": 64, "width": 64}
    )
    processor.save_pretrained(folder)
    return folder


def tiny_clip(folder: Path) -> Path:
    """A random CLIP with a word-level tokenizer that knows GenEval's prompt words, saved like a hub checkpoint."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, PreTrainedTokenizerFast

    from unifylab.data.geneval import OFFICIAL_COLORS

    words = ["<pad>", "<s>", "</s>", "<unk>", "a", "photo", "of", "object", "-colored", *OFFICIAL_COLORS, *LABELS]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split("-colored", "isolated"), pre_tokenizers.WhitespaceSplit()]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(folder)
    text = {"vocab_size": len(words), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    text |= {"num_attention_heads": 2, "max_position_embeddings": 16, "pad_token_id": 0, "bos_token_id": 1}
    vision = {"image_size": 16, "patch_size": 8, "hidden_size": 16, "intermediate_size": 32}
    vision |= {"num_hidden_layers": 1, "num_attention_heads": 2}
    torch.manual_seed(0)
    CLIPModel(
        CLIPConfig(text_config={**text, "eos_token_id": 2}, vision_config=vision, projection_dim=8)
    ).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def judges(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("judges")
    return tiny_detector(root / "m2f"), tiny_clip(root / "clip")


def test_detector_post_processing_finds_a_planted_mask(judges: tuple[Path, Path]) -> None:
    """Model outputs planted by hand: query 0 is surely a cat whose mask covers a rectangle; the detection must
    come back as that rectangle in the image's own pixels, through the processor's resize and padding."""
    from unifylab.eval.hf.geneval import Mask2FormerDetector

    detector = Mask2FormerDetector(str(judges[0]))
    image = np.zeros((40, 96, 3), np.uint8)  # resized to 32 x 64 and padded to 64 x 64
    seen: dict[str, int] = {}

    def planted(pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> SimpleNamespace:
        height, width = pixel_values.shape[-2:]
        seen["rows"], seen["height"] = int(pixel_mask[0].any(1).sum()), height  # the rest is padding
        classes = torch.full((1, 8, len(LABELS) + 1), -20.0)
        classes[0, 1:, -1] = 20.0  # every query but the first is "no object"
        classes[0, 0, LABELS.index("cat")] = 20.0
        masks = torch.full((1, 8, height // 4, width // 4), -20.0)  # Mask2Former's masks: a quarter of the input
        masks[0, 0, 2:6, 4:12] = 20.0  # input rows 8..24, columns 16..48
        return SimpleNamespace(class_queries_logits=classes, masks_queries_logits=masks)

    detector.model = planted
    found = detector(image)
    cat = max(found["cat"], key=lambda d: d.score)
    assert cat.score > 0.99 and cat.mask.shape == (40, 96) and seen["rows"] < seen["height"]
    x0, y0, x1, y1 = cat.box
    scale = 40 / seen["rows"]  # input rows to image rows, once the padding is dropped
    assert abs(x0 - 24) <= 2 and abs(x1 - 72) <= 2, cat.box
    assert abs(y0 - 8 * scale) <= 2 and abs(y1 - 24 * scale) <= 2, (cat.box, scale)
    assert sum(len(v) for v in found.values()) == 8 * len(LABELS)  # top 100 (query, class) pairs: all 24 here
    detector.top_k = 5
    assert sum(len(v) for v in detector(image).values()) == 5


def test_score_geneval_runs_the_official_judges_end_to_end(cli: Cli, judges: tuple[Path, Path], tmp_path: Path) -> None:
    lines = [
        {"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"},
        {"tag": "colors", "include": [{"class": "cat", "count": 1, "color": "red"}], "prompt": "a red cat"},
        {
            "tag": "counting",
            "include": [{"class": "bench", "count": 2}],
            "exclude": [{"class": "bench", "count": 3}],
            "prompt": "a photo of two benches",
        },
    ]
    meta = tmp_path / "evaluation_metadata.jsonl"
    meta.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rng = np.random.default_rng(0)
    for i in range(len(lines)):
        for k in range(2):  # GenEval's layout: <index>/samples/<k>.png
            save_png(
                tmp_path / "images" / f"{i:05d}" / "samples" / f"{k:04d}.png",
                rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
            )
    detector, clip = judges
    args = (
        "--metadata",
        meta,
        "--images",
        tmp_path / "images",
        "--detector",
        detector,
        "--clip",
        clip,
        "--device",
        "cpu",
    )
    code, stdout, err = cli("score", "geneval", *args, "--out", tmp_path / "records.jsonl", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["judge"] == "detector" and summary["images"] == 6
    assert set(summary["tasks"]) == {"single_object", "colors", "counting"}
    records = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(isinstance(r["correct"], bool) for r in records)
    assert all(set(r["detections"]) <= set(LABELS) for r in records)
    code, _, err = cli("score", "geneval", *args, "--judge", "parser")
    assert code == 2 and "--judge detector" in err  # COCO classes are not shapes: the parser refuses, saying why


def test_generate_geneval_draws_the_layout_with_its_recipe_and_resumes(cli: Cli, tmp_path: Path) -> None:
    assert cli("data", "geneval", "--out", tmp_path / "m", "--n-per-task", "2")[0] == 0
    meta, drawn = tmp_path / "m" / "metadata.jsonl", tmp_path / "drawn"
    args = ("generate", "geneval", "--metadata", meta, "--out", drawn, "--samples", "2", "--size", "32")
    code, _, err = cli(*args, "--model", "oracle")
    assert code == 0, err
    lines = meta.read_text().splitlines()
    assert sorted(p.name for p in drawn.iterdir()) == sorted([f"{i:05d}" for i in range(len(lines))] + ["recipe.json"])
    assert json.loads((drawn / "00003" / "metadata.jsonl").read_text()) == json.loads(lines[3])
    assert len(list(drawn.glob("*/samples/*.png"))) == 2 * len(lines)
    recipe = json.loads((drawn / "recipe.json").read_text())
    assert recipe["samples"] == 2 and recipe["model"] == "oracle"
    code, stdout, err = cli("score", "geneval", "--metadata", meta, "--images", drawn, "--json")
    assert code == 0 and json.loads(stdout)["overall"]["value"] == 1.0  # the oracle draws every prompt right
    (drawn / "00000" / "samples" / "0001.png").unlink()
    before = (drawn / "00001" / "samples" / "0000.png").stat().st_mtime_ns
    assert cli(*args, "--model", "oracle")[0] == 0  # a re-run draws only what is missing
    assert (drawn / "00000" / "samples" / "0001.png").is_file()
    assert (drawn / "00001" / "samples" / "0000.png").stat().st_mtime_ns == before
    code, _, err = cli(*args, "--model", "random")
    assert code == 2 and "recipe" in err  # another model's images are not mixed in
    via_eval = ("eval", "oracle", "--tasks", "geneval-official", "--out", tmp_path / "e", "--samples", "1")
    code, _, err = cli(*via_eval)
    assert code == 2 and "--geneval-metadata" in err
    assert cli(*via_eval, "--geneval-metadata", meta)[0] == 0
    assert len(list((tmp_path / "e").glob("*/samples/*.png"))) == len(lines)


def test_geneval_intervals_resample_prompts_not_images() -> None:
    from unifylab.eval.geneval import GenevalResult

    # two prompts drawn four times each: one always right, one always wrong; its eight images are not eight
    # independent draws, so the interval must span what two prompts allow
    records = [{"index": i, "tag": "single_object", "correct": i == 0} for i in (0, 1) for _ in range(4)]
    result = GenevalResult.of(records)
    task = result.tasks["single_object"]
    assert task.value == 0.5 and task.n == 8 and (task.lo, task.hi) == (0.0, 1.0)
    assert result.images.value == 0.5 and result.prompts.value == 0.5 and result.overall.n == 8
