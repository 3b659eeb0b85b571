"""Text tokenizer: byte-level BPE (HF `tokenizers`) trained on a world's language, with fixed special tokens.

Byte-level BPE round-trips any string exactly (decode(encode(x)) == x) while the world's closed vocabulary still
becomes one token per word after training, so sequences stay short.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

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
    world: str | None = None,
    knowledge: Collection[str] = (),
    moves: bool = False,
) -> list[str]:
    """The language of a world (`World.corpus`; by name, else the default world's): what its text tokenizer is
    trained on."""
    from unifylab.world import CLASSES, DEFAULT

    return CLASSES[world or DEFAULT].corpus(n_scenes, seed, knowledge=knowledge, moves=moves)
