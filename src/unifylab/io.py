"""File I/O shared by datasets and the CLI: jsonl, PNG images, and never clobbering a user's files."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from unifylab.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path) -> None:
    """Give a temp file or folder the permissions a plainly created one would have (mkstemp/mkdtemp use 0600/0700)."""
    mode = 0o777 if Path(path).is_dir() else 0o666
    os.chmod(path, mode & ~_umask())


def read_json(path: Path) -> Any:
    """Parse one JSON document, with the file and position in any error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None


def read_folder_config(folder: Path, what: str, hint: str) -> Any:
    """Parse `folder/config.json` of a saved component (`what`: 'model', 'tokenizer'), naming the folder or file
    and `hint` (how such a folder is made) in any error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: {what} folder not found")
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder / 'config.json'}: missing; {hint}")
    return read_json(folder / "config.json")


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line number, parsed object) for each non-blank line; a bad line names its number."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: malformed JSON at column {e.colno}: {e.msg}") from None


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    """Write rows as jsonl atomically (streamed to a temp file, fsync, rename), so a crash never leaves half a
    file."""
    write_text_atomic(path, (json.dumps(row) + "\n" for row in rows))


def write_text_atomic(path: Path, text: str | Iterable[str]) -> None:
    """Replace a file's content (a string, or pieces written as they come) atomically: temp file in the same
    folder, fsync, rename; a crash or a full disk leaves either the old file or the new one, never an empty or
    half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines([text] if isinstance(text, str) else text)
            f.flush()
            os.fsync(f.fileno())
        _publish_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(tensors: dict[str, Any], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' `save_file`, with a failed write (full disk, read-only folder, ...) raised as the OSError it
    is rather than safetensors' own error type, so callers and the CLI treat it like every filesystem error."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        n = int(code.group(1))
        raise OSError(n, os.strerror(n), str(path)) from None


def append_jsonl(path: Path, rows: Iterable[Any]) -> None:
    """Append rows to a jsonl file this program grows (a crash can tear only the last line, which
    `read_jsonl_tolerant` drops), flushed to disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl_tolerant(path: Path) -> list[Any]:
    """The objects of a jsonl file this program appends to, dropping a torn last line (what a crash or a full disk
    leaves); a bad line elsewhere is a UserError naming it."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    out = []
    for n, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if n == len(lines):
                break
            raise UserError(f"{path}:{n}: malformed JSON at column {e.colno}: {e.msg}") from None
    return out


def inside(root: Path, relative: str, what: str) -> Path:
    """`root / relative`, resolved, which must stay inside `root` (no '..' escape, no absolute path): input data
    never makes the program read or write elsewhere."""
    root = Path(root).resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise UserError(f"{what} {relative!r} points outside {root}; use a path inside it")
    return target


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def file_name(value: str, what: str) -> str:
    """`value` when it can name a file inside a folder (letters, digits, _ . + -; no separators, no '..')."""
    if not _NAME.fullmatch(value) or ".." in value:
        raise UserError(f"{what} {value!r} cannot name a file: use letters, digits and _ . + - only")
    return value


_LOSSLESS_COLOUR_MODES = {"RGB", "RGBA", "P"}


def load_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """Load an image as RGB uint8 [H, W, 3]; wrong mode, wrong size, truncated or non-image files are UserErrors.

    RGBA must be fully opaque and P (palette) images are expanded; grey-scale modes carry no colour and are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode not in _LOSSLESS_COLOUR_MODES:
                raise UserError(
                    f"{path}: image mode is {mode!r}, but colours are needed; save it as RGB (e.g. im.convert('RGB'))"
                )
            rgba = np.asarray(im.convert("RGBA"))
    except UnidentifiedImageError:
        raise UserError(f"{path}: not a readable image file") from None
    except (OSError, SyntaxError) as e:
        raise UserError(f"{path}: cannot read image ({e}); is the file truncated or corrupt?") from None
    if (rgba[..., 3] != 255).any():
        raise UserError(f"{path}: image has transparent pixels; flatten it onto the background and save as RGB")
    arr = np.ascontiguousarray(rgba[..., :3])
    h, w = arr.shape[:2]
    if size is not None and (h, w) != (size, size):
        raise UserError(f"{path}: image is {w}x{h} px, expected {size}x{size}; resize it to the world size")
    return arr


def save_png(path: Path, image: np.ndarray) -> None:
    """Save an RGB uint8 array as PNG (lossless, so the parser reads back exactly what was drawn)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, "RGB").save(path, format="PNG")


def guard_output(path: Path, force: bool) -> None:
    """Refuse to overwrite an existing file, or a non-empty folder, unless `force` is set."""
    path = Path(path)
    if not path.exists() or force:
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    kind = "folder" if path.is_dir() else "file"
    raise UserError(f"{path}: {kind} already exists; pass --force to overwrite it or choose another --out")


def claim_output(out: Path, owned: list[str], *, force: bool) -> None:
    """Refuse a non-empty `out` unless `force` (as `guard_output`); with it, remove what an earlier run of the same
    command wrote there (the `owned` names), so no stale file stays beside the new ones. Other files are kept."""
    guard_output(out, force)
    for name in owned:
        p = Path(out) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


@contextmanager
def atomic_folder(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path` (only if allowed), on failure it vanishes.

    So an interrupted command never leaves a half-written output, and an existing one is only replaced with --force.
    """
    path = Path(path)
    guard_output(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        for p in (tmp, *tmp.rglob("*")):
            _publish_mode(p)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


LOCK = ".unifylab.lock"


@contextmanager
def folder_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold `folder`/.unifylab.lock for the duration (an OS lock, freed if the process dies), so a second process
    writing into the same folder gets one clear error naming the first instead of interleaving its files. No-op
    where the OS has no fcntl (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise UserError(
                f"{folder}: {what} in use by process {holder}; wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
