"""Packing examples into model inputs, and the one vocabulary layout: text ids first, then image ids (offset).

Forms (each `image` is the image tokenizer's tokens; `<boi>`/`<eoi>` bracket every image):
  und      <bos> <und> <boi> image <eoi> question answer <eos>
  gen      <bos> <gen> prompt <boi> image <eoi> <eos>
  edit     <bos> <edit> <boi> source <eoi> instruction <boi> target <eoi> <eos>
  rewrite  <bos> <rewrite> prompt answer <eos>
Labels equal the input ids on trained segments (the model shifts them) and IGNORE elsewhere; by default only the
answer (und, rewrite) or the output image (gen, edit) is trained, plus the `<eoi>`/`<eos>` that closes it. With a
continuous generation tokenizer (flow output) an output image is continuous slots marked `flow`, labelled FLOW when
trained (the model's flow-matching loss, not cross-entropy) and its closers untrained (the sampler writes them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from unifylab.errors import UserError
from unifylab.tokenize.image import ImageTokenizer
from unifylab.tokenize.text import TextTokenizer

IGNORE = -100
FLOW = -1  # label of a trained flow-output image slot (a velocity target, not a token)
TEXT, IMAGE = 0, 1  # modality ids
SEGMENTS: dict[str, tuple[str, ...]] = {  # per sequence form, its segments in order
    "und": ("image", "question", "answer"),
    "gen": ("prompt", "image"),
    "edit": ("source", "instruction", "target"),
    "rewrite": ("prompt", "answer"),
}
DEFAULT_LOSS_ON: dict[str, tuple[str, ...]] = {
    "und": ("answer",),
    "gen": ("image",),
    "edit": ("target",),
    "rewrite": ("answer",),
}
FORMS: tuple[str, ...] = tuple(SEGMENTS)  # the sequence forms (a training task is written in one of them)
_CLOSERS = ("<eoi>", "<eos>")


@dataclass(frozen=True)
class VocabLayout:
    """Ids [0, n_text) are text tokens; [n_text, n_text + n_image) are image codes shifted by `image_offset`."""

    n_text: int
    n_image: int

    @property
    def image_offset(self) -> int:
        return self.n_text

    @property
    def size(self) -> int:
        return self.n_text + self.n_image

    def image_to_vocab(self, codes: torch.Tensor) -> torch.Tensor:
        codes = torch.as_tensor(codes)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.n_image):
            raise ValueError(f"image codes must lie in 0..{self.n_image - 1}")
        return codes + self.n_text

    def vocab_to_image(self, ids: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(ids)
        if ids.numel() and not bool(self.is_image(ids).all()):
            raise ValueError(f"ids outside the image range {self.n_text}..{self.size - 1}")
        return ids - self.n_text

    def is_image(self, ids: torch.Tensor) -> torch.Tensor:
        ids = torch.as_tensor(ids)
        return (ids >= self.n_text) & (ids < self.size)

    def to_dict(self) -> dict[str, int]:
        return {"n_text": self.n_text, "n_image": self.n_image, "image_offset": self.image_offset}


class Tokenizers(NamedTuple):
    """The tokenizers a model reads and writes with, in Packer's order: text, understanding-image input and
    generation-image output (one object for both images unless a run sets them apart)."""

    text: TextTokenizer
    und: ImageTokenizer
    gen: ImageTokenizer


@dataclass
class Example:
    """One sequence to pack, in one of the FORMS. `text` is the question / prompt / instruction; `answer` the text
    target (und, rewrite); `image` the image tokens (und input or gen/edit output); `source` the edit's input
    image."""

    form: str
    text: str = ""
    answer: str = ""
    image: torch.Tensor | None = None
    source: torch.Tensor | None = None


@dataclass
class Packed:
    """One packed sequence; `features` holds the continuous image inputs at the positions where `cont` is True."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    modality: torch.Tensor
    pos2d: torch.Tensor
    cont: torch.Tensor
    features: torch.Tensor
    segments: list[tuple[str, int, int]] = field(default_factory=list)  # (name, start, end) for inspection
    flow: torch.Tensor | None = None  # [L] bool: slots of a flow-output image (None: none)

    def __len__(self) -> int:
        return int(self.input_ids.numel())


class Packer:
    """Builds Packed sequences from Examples for one text tokenizer, an input (understanding) image tokenizer and
    an output (generation) image tokenizer, which may be the same object."""

    def __init__(
        self,
        text: TextTokenizer,
        und_image: ImageTokenizer,
        gen_image: ImageTokenizer | None = None,
        loss_on: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.text, self.und_image = text, und_image
        self.gen_image = gen_image or und_image
        self.flow = not self.gen_image.discrete  # continuous output images: the model draws them by flow matching
        codes = [t.vocab_size for t in (und_image, self.gen_image) if t.discrete]
        self.layout = VocabLayout(text.vocab_size, codes[0] if codes else 0)
        if len(set(codes)) > 1:
            raise UserError(
                "discrete understanding and generation tokenizers must share one vocabulary; use the "
                "same tokenizer for both, or a continuous (patch) one for understanding"
            )
        dims = {t.feature_dim for t in (und_image, self.gen_image) if not t.discrete}
        if len(dims) > 1:
            raise UserError(
                f"continuous understanding and generation tokenizers give features of widths {sorted(dims)}; "
                "use one patch size for both"
            )
        self.loss_on = {**DEFAULT_LOSS_ON, **{k: tuple(v) for k, v in (loss_on or {}).items()}}
        for form, segs in self.loss_on.items():
            if form not in SEGMENTS:
                raise UserError(f"loss_on: unknown sequence form {form!r}; expected one of {', '.join(FORMS)}")
            bad = [s for s in segs if s not in SEGMENTS[form]]
            if bad:
                raise UserError(f"loss_on.{form}: unknown segment(s) {bad}; expected some of {list(SEGMENTS[form])}")
        self.pad_id = text.id("<pad>")
        self._feature_dim = dims.pop() if dims else 0

    def pack(self, ex: Example, with_target: bool = True) -> Packed:
        """The full sequence, or (with_target=False) the prefix a model continues at inference."""
        if ex.form not in FORMS:
            raise UserError(f"unknown sequence form {ex.form!r}; expected one of {', '.join(FORMS)}")
        b = _Builder(self)
        b.special("<bos>", f"<{ex.form}>")
        if ex.form == "und":
            b.image(ex.image, self.und_image, "image")
            b.text(ex.text, "question")
            if with_target:
                b.text(ex.answer, "answer")
                b.special("<eos>")
        elif ex.form == "gen":
            b.text(ex.text, "prompt")
            b.special("<boi>")
            if with_target:
                b.image(ex.image, self.gen_image, "image", bracket=False, output=True)
                b.special("<eoi>", "<eos>")
        elif ex.form == "edit":
            b.image(ex.source, self.und_image, "source")
            b.text(ex.text, "instruction")
            b.special("<boi>")
            if with_target:
                b.image(ex.image, self.gen_image, "target", bracket=False, output=True)
                b.special("<eoi>", "<eos>")
        else:
            b.text(ex.text, "prompt")
            if with_target:
                b.text(ex.answer, "answer")
                b.special("<eos>")
        return b.finish(self.loss_on[ex.form])

    def collate(self, items: Sequence[Packed], pack: bool = False) -> dict[str, torch.Tensor]:
        """Right-pad to the longest: input_ids, labels, modality, pos2d, cont, flow, attention_mask [B, L]; features
        [Nc, D] (the continuous slots' values, row-major);
        `example` [B, L] gives each token's item index (-1 on padding).

        With `pack`, several sequences share a row (first-fit, rows as long as the longest item, items of one task
        form per row so a forked backbone routes each row whole) and `segments` [B, L] (= example) tells the model
        to restart positions and block attention at item boundaries: the loss is the unpacked one, with less padding.
        """
        if not items:
            raise ValueError("cannot collate an empty batch")
        rows = _first_fit(items) if pack else [[i] for i in range(len(items))]
        order = [i for row in rows for i in row]
        lens = torch.tensor([len(items[i]) for i in order])
        row_of = torch.tensor([r for r, row in enumerate(rows) for _ in row])
        ends = lens.cumsum(0)
        first = torch.ones(len(order), dtype=torch.bool)  # each row's first item
        first[1:] = row_of[1:] != row_of[:-1]
        row_base = torch.where(first, ends - lens, torch.zeros_like(ends)).cummax(0).values
        at = ends - lens - row_base  # each item's offset in its row
        length = int((at + lens).max())
        n = len(rows)
        # every token's flat position in the [n, length] batch, in `order`
        dest = torch.repeat_interleave(row_of * length + at - (ends - lens), lens) + torch.arange(int(ends[-1]))
        out = {
            "input_ids": torch.full((n, length), self.pad_id, dtype=torch.long),
            "labels": torch.full((n, length), IGNORE, dtype=torch.long),
            "modality": torch.full((n, length), TEXT, dtype=torch.long),
            "pos2d": torch.full((n, length, 2), -1, dtype=torch.long),
            "cont": torch.zeros((n, length), dtype=torch.bool),
            "flow": torch.zeros((n, length), dtype=torch.bool),
            "attention_mask": torch.zeros((n, length), dtype=torch.bool),
            "example": torch.full((n, length), -1, dtype=torch.long),
        }
        for key in ("input_ids", "labels", "modality", "pos2d", "cont"):
            flat = out[key].view(n * length, *out[key].shape[2:])
            flat[dest] = torch.cat([getattr(items[i], key) for i in order])
        if any(items[i].flow is not None for i in order):
            out["flow"].view(-1)[dest] = torch.cat([_flow_of(items[i]) for i in order])
        out["labels"].view(-1)[row_of * length + at] = IGNORE  # a sequence's first token is never predicted
        out["attention_mask"].view(-1)[dest] = True
        out["example"].view(-1)[dest] = torch.repeat_interleave(torch.tensor(order), lens)
        if pack:
            out["segments"] = out["example"]
        feats = [items[i].features for i in order]
        out["features"] = torch.cat(feats) if self._feature_dim else torch.zeros(0, 0)
        return out


def _first_fit(items: Sequence[Packed]) -> list[list[int]]:
    """Rows of item indices, first-fit decreasing by length; a row holds one task form (its first two tokens)."""
    cap = max(len(p) for p in items)
    rows: list[list[int]] = []
    room: list[int] = []
    form: list[int] = []
    for i in sorted(range(len(items)), key=lambda i: -len(items[i])):
        k, tag = len(items[i]), int(items[i].input_ids[1])
        for r in range(len(rows)):
            if form[r] == tag and room[r] >= k:
                rows[r].append(i)
                room[r] -= k
                break
        else:
            rows.append([i])
            room.append(cap - k)
            form.append(tag)
    return rows


class _Builder:
    """Accumulates the tokens of one sequence with their segment names, as plain lists (tensors are made once, in
    `finish`)."""

    def __init__(self, packer: Packer) -> None:
        self.p = packer
        self.ids: list[int] = []
        self.names: list[str] = []
        self.mod: list[int] = []
        self.cont: list[bool] = []
        self.flow: list[bool] = []
        self.pos: list[tuple[int, torch.Tensor]] = []  # (first token, [n, 2] (row, col)) of each image
        self.features: list[torch.Tensor] = []

    def _add(
        self,
        ids: list[int],
        name: str,
        modality: int,
        pos: torch.Tensor | None = None,
        cont: bool = False,
        flow: bool = False,
    ) -> None:
        n = len(ids)
        if pos is not None:
            self.pos.append((len(self.ids), pos))
        self.ids += ids
        self.names += [name] * n
        self.mod += [modality] * n
        self.cont += [cont] * n
        self.flow += [flow] * n

    def special(self, *tokens: str) -> None:
        for t in tokens:
            self._add([self.p.text.id(t)], t, TEXT)

    def text(self, s: str, name: str) -> None:
        self._add(self.p.text.encode(s), name, TEXT)

    def image(
        self, tokens: torch.Tensor | None, tok: ImageTokenizer, name: str, bracket: bool = True, output: bool = False
    ) -> None:
        """An image's tokens; a continuous `output` image (flow output) becomes flow slots."""
        if tokens is None:
            raise UserError(f"example has no image tokens for its {name!r} segment")
        tokens = torch.as_tensor(tokens)
        want = (tok.num_tokens,) if tok.discrete else (tok.num_tokens, tok.feature_dim)
        if tuple(tokens.shape) != want:
            raise UserError(
                f"{name} image tokens have shape {list(tokens.shape)}; the {tok.kind} tokenizer gives {list(want)}"
            )
        if bracket:
            self.special("<boi>")
        if tok.discrete:
            self._add(self.p.layout.image_to_vocab(tokens).tolist(), name, IMAGE, tok.positions())
        else:
            self._add([self.p.pad_id] * tok.num_tokens, name, IMAGE, tok.positions(), cont=True, flow=output)
            self.features.append(tokens.float())
        if bracket:
            self.special("<eoi>")

    def finish(self, loss_on: tuple[str, ...]) -> Packed:
        names = self.names
        trained = [n in loss_on for n in names]
        for i in range(1, len(names)):  # the closer right after a trained token segment is trained with it
            if names[i] in _CLOSERS and names[i - 1] in loss_on and not self.flow[i - 1]:
                trained[i] = True
        if any(t and c and not f for t, c, f in zip(trained, self.cont, self.flow)):
            raise UserError("loss_on names a continuous input image segment; only outputs can be trained")
        ids = torch.tensor(self.ids, dtype=torch.long)
        labels = torch.tensor(
            [(FLOW if f else t) if k else IGNORE for t, k, f in zip(self.ids, trained, self.flow)], dtype=torch.long
        )
        pos = torch.full((len(ids), 2), -1, dtype=torch.long)
        for start, p in self.pos:
            pos[start : start + len(p)] = p
        segments, start = [], 0
        for i in range(1, len(names) + 1):
            if i == len(names) or names[i] != names[start]:
                segments.append((names[start], start, i))
                start = i
        d = self.p._feature_dim
        feats = torch.cat(self.features) if self.features else torch.zeros(0, d)
        return Packed(
            ids,
            labels,
            torch.tensor(self.mod, dtype=torch.long),
            pos,
            torch.tensor(self.cont, dtype=torch.bool),
            feats,
            segments,
            torch.tensor(self.flow, dtype=torch.bool) if any(self.flow) else None,
        )


def _flow_of(p: Packed) -> torch.Tensor:
    return p.flow if p.flow is not None else torch.zeros(len(p), dtype=torch.bool)


def describe(p: Packed, text: TextTokenizer, layout: VocabLayout) -> list[dict[str, Any]]:
    """Human-readable view of a packed sequence, one entry per segment (for debugging and docs)."""
    out = []
    for name, a, b in p.segments:
        ids = p.input_ids[a:b]
        if bool(p.cont[a:b].any()):
            shown: Any = f"{b - a} continuous tokens"
        elif bool(layout.is_image(ids).all()):
            shown = layout.vocab_to_image(ids).tolist()
        else:
            shown = text.decode(ids.tolist(), skip_special=False)
        out.append({"segment": name, "tokens": shown, "trained": bool((p.labels[a:b] != IGNORE).any())})
    return out
