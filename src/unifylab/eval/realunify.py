"""Official RealUnify files: load the released items, run any protocol model (and any protocol judge), score.

UEG items: {"task_type", "prompt", "question_list": [{"question", "answer"}]}: the model draws the prompt and the
judge answers every yes/no question on the drawing; correct only if all match. GEU items: {"task_type",
"question", "answer": letter, "image": path (or list), "options"?: list or {letter: text}}: 4-option MC.
Answers are parsed strictly: 'yes'/'no' only as whole words (never 'no' inside 'nothing' or 'know'), an option
letter only when it stands alone (never the article 'A' of a sentence). Every record also carries the score the
released scorer's parsing gives the same reply (`released_yes_no`, `released_letter`), so the two can be compared
item by item; judge replies are cached in the output folder, so a re-run asks the judge nothing it answered before.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unifylab.errors import UserError
from unifylab.eval.generators import LETTERS, mc_prompt
from unifylab.eval.protocol import ImageRequest, TextRequest, UnifiedModel
from unifylab.eval.scorers import parse_letter
from unifylab.eval.stats import bootstrap_mean, bootstrap_mean_of_groups, paired_difference
from unifylab.io import (
    MalformedJSON,
    append_jsonl,
    file_name,
    inside,
    load_rgb,
    parse_json,
    read_jsonl_tolerant,
    read_user_text,
    save_png,
    write_jsonl,
)
from unifylab.world import WorldConfig


@dataclass
class RealUnifyItem:
    id: str
    kind: str  # "ueg" or "geu"
    task_type: str
    prompt: str
    questions: list[dict[str, str]] = field(default_factory=list)
    options: list[str] | None = None
    answer: str | None = None
    images: list[Path] = field(default_factory=list)


def _read(path: Path) -> list[tuple[str, Any]]:
    """The file's items (a JSON list, {"data": [...]}, or JSONL), each with where it is: 'item k' or 'line n'."""
    text = read_user_text(path, "RealUnify file")
    try:
        data = parse_json(text, str(path))
    except MalformedJSON:
        return [(f"line {n}", parse_json(ln, f"{path}:{n}")) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    rows = data if isinstance(data, list) else data.get("data", [data]) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise UserError(f'{path}: expected a list of items (or {{"data": [...]}}), got {type(data).__name__}')
    return [(f"item {k}", d) for k, d in enumerate(rows)]


def load_realunify(path: Path) -> list[RealUnifyItem]:
    """Validate and load a RealUnify JSON / JSONL file; image paths are relative to the file."""
    path = Path(path)
    items = []
    seen: dict[str, str] = {}
    for k, (at, d) in enumerate(_read(path)):
        where = f"{path}: {at}"
        if not isinstance(d, dict) or "task_type" not in d:
            raise UserError(f"{where}: expected an object with 'task_type'")
        ident = file_name(str(d.get("id", d.get("index", k))), f"{where}: id")  # it names the item's image file
        if ident in seen:
            raise UserError(f"{where}: id {ident!r} is also the id at {seen[ident]}; give each item its own id")
        seen[ident] = at
        if "question_list" in d:
            ql = d["question_list"]
            ok = (
                isinstance(ql, list)
                and ql
                and all(isinstance(q, dict) and {"question", "answer"} <= set(q) for q in ql)
            )
            if not ok or not isinstance(d.get("prompt"), str):
                raise UserError(
                    f"{where}: a UEG item needs 'prompt' and a non-empty 'question_list' of {{question, answer}}"
                )
            answers = [parse_yes_no(str(q["answer"])) for q in ql]
            if None in answers:
                bad = ql[answers.index(None)]["answer"]
                raise UserError(f"{where}: a verification answer must say yes or no, got {bad!r}")
            qs = [{"question": str(q["question"]), "answer": a} for q, a in zip(ql, answers)]
            items.append(RealUnifyItem(ident, "ueg", str(d["task_type"]), d["prompt"], questions=qs))
            continue
        answer = str(d.get("answer", "")).strip().upper()
        if "question" not in d or answer not in LETTERS:
            raise UserError(
                f"{where}: a GEU item needs 'question' and 'answer' as a letter A-D, got {d.get('answer')!r}"
            )
        opts = d.get("options")
        if isinstance(opts, dict):
            opts = [str(opts[x]) for x in LETTERS if x in opts]
        if opts is not None and (not isinstance(opts, list) or len(opts) != len(LETTERS)):
            raise UserError(f"{where}: 'options' must give exactly {len(LETTERS)} options (A-D), got {opts!r}")
        raw = d.get("image", d.get("images", []))
        raw = [raw] if isinstance(raw, str) else raw
        if not isinstance(raw, list) or not raw or not all(isinstance(p, str) for p in raw):
            raise UserError(f"{where}: a GEU item needs 'image': a path (or a list of paths) relative to {path.parent}")
        paths = [inside(path.parent, p, f"{where}: image") for p in raw]
        for p in paths:
            if not p.is_file():
                raise UserError(f"{where}: image {p} not found (paths are relative to {path.parent})")
        items.append(
            RealUnifyItem(
                ident, "geu", str(d["task_type"]), str(d["question"]), options=opts, answer=answer, images=paths
            )
        )
    if not items:
        raise UserError(f"{path}: no items")
    return items


_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def parse_yes_no(text: str) -> str | None:
    """'yes' or 'no' as a whole word (the first one said); None when neither is said."""
    m = _YES_NO.search(text)
    return m.group(1).lower() if m else None


def released_yes_no(text: str) -> str:
    """The released RealUnify scorer's reading of a yes/no reply: 'no' whenever the letters 'no' occur anywhere
    (also in 'not', 'know', 'nothing'), else 'yes' when 'yes' occurs, else the reply itself (never a match)."""
    t = text.lower()
    return "no" if "no" in t else "yes" if "yes" in t else t


_ANSWER_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
    "Answer",
    "Answer is",
)


def released_letter(text: str) -> str:
    """The released RealUnify scorer's reading of a multiple-choice reply: after removing a few answer phrases,
    the first capital A-D anywhere (so the article 'A' of a sentence counts), '' when there is none."""
    t = text.strip()
    for prefix in _ANSWER_PREFIXES:
        t = t.replace(prefix, "")
    m = re.search(r"[ABCD]", t)
    return m.group(0) if m else ""


class JudgeCache:
    """The judge's replies by (judge, image, question), kept in `path` (jsonl) so a re-run asks only new questions."""

    def __init__(self, path: Path, judge: str) -> None:
        self.path, self.judge = path, judge
        rows = read_jsonl_tolerant(path) if path.is_file() else []
        self.replies = {r["key"]: r["reply"] for r in rows if isinstance(r, dict) and r.get("judge") == judge}

    def key(self, request: TextRequest) -> str:
        image = np.ascontiguousarray(np.asarray(request.image, np.uint8))
        digest = hashlib.sha256(image.tobytes() + str(image.shape).encode() + request.prompt.encode())
        return digest.hexdigest()

    def ask(self, judge: UnifiedModel, requests: list[TextRequest]) -> list[str]:
        keys = [self.key(r) for r in requests]
        todo = {k: r for k, r in zip(keys, requests) if k not in self.replies}
        if todo:
            answers = judge.generate_text(list(todo.values()))
            new = [{"judge": self.judge, "key": k, "reply": a} for k, a in zip(todo, answers)]
            append_jsonl(self.path, new)
            self.replies.update({k: a for k, a in zip(todo, answers)})
        return [self.replies[k] for k in keys]


def run_realunify(
    model: UnifiedModel,
    judge: UnifiedModel,
    items: list[RealUnifyItem],
    out: Path,
    *,
    mode: str = "direct",
    world: WorldConfig,
    progress: Callable[[int, str], None] = lambda done, stage: None,
) -> list[dict[str, Any]]:
    """Score every item, the model drawing on `world`'s canvas (a world config); writes out/realunify.jsonl (with
    reasons) and the drawn images; returns the records.
    `progress(items scored, stage)` is called as each stage starts and when all are scored."""
    if mode not in ("direct", "stepwise"):
        raise UserError(f"--mode must be direct or stepwise, got {mode!r}")
    out.mkdir(parents=True, exist_ok=True)
    records = []
    ueg = [it for it in items if it.kind == "ueg"]
    if ueg:
        prompts = [it.prompt for it in ueg]
        if mode == "stepwise":
            progress(0, "rewriting UEG prompts")
            prompts = model.generate_text([TextRequest(p, mode="rewrite", max_tokens=96) for p in prompts])
        progress(0, "drawing UEG images")
        images = model.generate_images([ImageRequest(p, world, seed=k) for k, p in enumerate(prompts)])
        progress(0, "judging UEG images")
        asks = [
            TextRequest(q["question"], np.asarray(im, np.uint8)) for it, im in zip(ueg, images) for q in it.questions
        ]
        identity = getattr(judge, "fingerprint", None) or getattr(judge, "name", type(judge).__name__)
        replies = iter(JudgeCache(out / "judge-replies.jsonl", json.dumps(identity, sort_keys=True)).ask(judge, asks))
        for it, p, im in zip(ueg, prompts, images):
            img_path = out / "images" / f"{it.id}.png"
            save_png(img_path, np.asarray(im, np.uint8))
            reasons, released = [], True
            for q in it.questions:
                reply = next(replies)
                released = released and released_yes_no(reply) == q["answer"]
                if parse_yes_no(reply) != q["answer"]:
                    reasons.append(f"{q['question']} expected {q['answer']}, judge said {reply!r}")
            records.append(
                {
                    "id": it.id,
                    "kind": "ueg",
                    "task_type": it.task_type,
                    "prompt": it.prompt,
                    "drawn_from": p,
                    "image": str(img_path.relative_to(out)),
                    "score": float(not reasons),
                    "score_released": float(released),
                    "reasons": reasons,
                }
            )
    geu = [it for it in items if it.kind == "geu"]
    if geu:
        shown = [load_rgb(it.images[0]) for it in geu]
        if mode == "stepwise":
            progress(len(ueg), "drawing GEU images")
            shown = model.generate_images(
                [ImageRequest(it.prompt, world, source=im, seed=k) for k, (it, im) in enumerate(zip(geu, shown))]
            )
        prompts = [mc_prompt(it.prompt, it.options) if it.options else it.prompt for it in geu]
        progress(len(ueg), "answering GEU items")
        replies = model.generate_text(
            [
                TextRequest(p, np.asarray(im, np.uint8), choices=list(LETTERS), max_tokens=8)
                for p, im in zip(prompts, shown)
            ]
        )
        for it, reply in zip(geu, replies):
            got = parse_letter(reply)
            reasons = [] if got == it.answer else [f"answered {reply!r} ({got or 'no letter'}), expected {it.answer}"]
            records.append(
                {
                    "id": it.id,
                    "kind": "geu",
                    "task_type": it.task_type,
                    "prompt": it.prompt,
                    "reply": reply,
                    "score": float(not reasons),
                    "score_released": float(released_letter(reply) == it.answer),
                    "reasons": reasons,
                }
            )
    write_jsonl(out / "realunify.jsonl", records)
    progress(len(records), "scored")
    return records


def summarise_realunify(records: list[dict[str, Any]], *, released: bool = False) -> dict[str, Any]:
    """Accuracy per task type, per direction (UEG, GEU) and overall, each with a 95 % bootstrap CI, under the strict
    parsing (or with `released`, the released scorer's); and the other parsing's overall with the paired difference
    released - strict, so what the parsing changes is reported beside the result."""
    key, other = ("score_released", "score") if released else ("score", "score_released")
    by_type: dict[str, list[float]] = defaultdict(list)
    by_kind: dict[str, list[float]] = defaultdict(list)
    for r in records:
        by_type[r["task_type"]].append(r[key])
        by_kind[r["kind"]].append(r[key])
    strict = [r["score"] for r in records]
    loose = [r["score_released"] for r in records]
    return {
        "parsing": "released" if released else "strict",
        "task_types": {t: bootstrap_mean(v).to_dict() for t, v in sorted(by_type.items())},
        "directions": {k: bootstrap_mean(v).to_dict() for k, v in sorted(by_kind.items())},
        "overall": bootstrap_mean([r[key] for r in records]).to_dict(),
        "mean_of_task_types": bootstrap_mean_of_groups(by_type).to_dict(),
        f"overall_{'strict' if released else 'released'}_parsing": bootstrap_mean(
            [r[other] for r in records]
        ).to_dict(),
        "released_minus_strict": paired_difference(strict, loose)[0].to_dict(),
        "items_parsed_differently": int(sum(a != b for a, b in zip(strict, loose))),
    }
