"""Text tokenizer: byte-level BPE (HF `tokenizers`) trained on a world's language, with fixed special tokens.

Byte-level BPE round-trips any string exactly (decode(encode(x)) == x) while the world's closed vocabulary still
becomes one token per word after training, so sequences stay short.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from unifylab.errors import UserError
from unifylab.io import write_text_atomic

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<boi>", "<eoi>", "<und>", "<gen>", "<edit>", "<rewrite>")
FILE = "tokenizer.json"


class TextTokenizer:
    """A trained HF tokenizer whose first ids are SPECIAL_TOKENS in order (`<pad>` = 0)."""

    def __init__(self, tokenizer: Tokenizer, source: str = "<memory>") -> None:
        for i, tok in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(tok) != i:
                raise UserError(
                    f"{source}: special token {tok} must have id {i}, found {tokenizer.token_to_id(tok)}; "
                    "retrain it with `unifylab tokenizer train-text`"
                )
        self.hf = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 512) -> TextTokenizer:
        """Train byte-level BPE on `texts`; the special tokens come first."""
        texts = list(texts)
        if not texts:
            raise UserError("cannot train a text tokenizer on an empty corpus")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size()

    def id(self, token: str) -> int:
        """Id of a special token such as '<boi>'."""
        i = self.hf.token_to_id(token)
        if i is None:
            raise KeyError(token)
        return i

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special)

    def save_pretrained(self, folder: Path) -> None:
        """folder/tokenizer.json, written atomically (a full disk is then the OSError it is, not the tokenizers
        library's own error type)."""
        write_text_atomic(Path(folder) / FILE, self.hf.to_str(pretty=True))

    @classmethod
    def from_pretrained(cls, path: Path) -> TextTokenizer:
        """Load from a folder holding tokenizer.json (or the file itself)."""
        path = Path(path)
        file = path / FILE if path.is_dir() else path
        if not file.is_file():
            raise UserError(f"{file}: text tokenizer not found; train one with `unifylab tokenizer train-text`")
        try:
            tok = Tokenizer.from_file(str(file))
        except Exception as e:  # the Rust side raises plain Exceptions with a message
            raise UserError(f"{file}: not a valid tokenizer.json ({str(e).splitlines()[0]})") from None
        return cls(tok, str(file))


def world_corpus(
    n_scenes: int = 2000,
    seed: int = 0,
    *,
    world: str = "shapes",
    knowledge: Collection[str] = (),
    moves: bool = False,
) -> list[str]:
    """The language of a world. Watch: captions, every question with its answer, and prompts over faces of every
    minute step. Shapes: captions, questions, answers and prompts over scenes of every grid and size, plus GenEval
    prompts; with `knowledge` (fact families) every fact's questions, answer and named prompts in those families,
    with `moves` every skill's questions and edits (on both worlds), so each name and skill word is whole words
    whatever is taught."""
    from unifylab.data.geneval import generate
    from unifylab.world.shapes import canvas as W
    from unifylab.world.shapes import knowledge as K
    from unifylab.world.shapes import language as L
    from unifylab.world.shapes import skills as S
    from unifylab.world.shapes.canvas import ShapesConfig, sample_scenes

    rng = np.random.default_rng(seed)
    texts: list[str] = []
    if world == "watch":
        from unifylab.world.watch import face as WA
        from unifylab.world.watch import language as WL

        for k, step in enumerate((1, 5)):
            for face in WA.sample_faces(WA.WatchConfig(size=128, minute_step=step), max(1, n_scenes // 2), seed + k):
                texts += [WL.caption(face, rng), WL.t2i_prompt(face, rng)]
                texts += [t for qa in (WL.ask(face, kind) for kind in WL.QA_KINDS) for t in (qa.question, qa.answer)]
        if moves:  # the hands-turning skill: each offset's question and edit, and the explicit edit
            offsets = [WL.skill_minutes(k) for k in WL.skills(5)]
            for j, face in enumerate(WA.sample_faces(WA.WatchConfig(size=128), max(1, n_scenes // 4), seed)):
                m = offsets[j % len(offsets)]
                texts += [WL.later_question(face, m).question, WL.later_instruction(m), WL.set_instruction(face.time)]
        return texts
    configs = [
        ShapesConfig(size=96, grid=g, min_objects=0, max_objects=6, sizes=("large", "small")) for g in (3, 4, 5, 6)
    ]
    for k, cfg in enumerate(configs):
        for scene in sample_scenes(cfg, max(1, n_scenes // len(configs)), seed + k):
            texts.append(L.caption(scene, rng))
            texts.append(L.t2i_prompt(scene, rng)[0])
            qa = L.sample_qa(scene, rng)
            texts += [qa.question, qa.answer]
    texts += [it.prompt for it in generate(20, seed)]
    looks = [(W.SHAPES[j % len(W.SHAPES)], list(W.COLORS)[j % len(W.COLORS)]) for j in range(36)]
    for fact in K.FACTS.values():
        if fact.family in knowledge:
            texts += [t.format(name=fact.name) for t in fact.QUESTIONS] + [fact.answer]
            scenes = [fact.scene(p, fact.pair or look, size=96, grid=6) for p, look in zip(fact.places(6), looks)]
            texts += [fact.prompt(sc) for sc in scenes]
    if moves:
        for scene in sample_scenes(ShapesConfig(size=32, grid=3, min_objects=1, max_objects=3), n_scenes // 4, seed):
            for direction in S.SKILLS:
                texts += [t for m in S.moves(scene, direction) for t in (m.question, m.instruction, m.explicit)]
    return texts
