"""File I/O shared by datasets and the CLI: jsonl, PNG images, and never clobbering a user's files."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

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


def read_user_text(path: Path, what: str = "file") -> str:
    """A user's text file decoded as UTF-8; a missing file or one that is not UTF-8 is a UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start} is not UTF-8); save it as UTF-8") from None


class MalformedJSON(UserError):
    """Text that is not JSON (`parse_json`); a reader of a file this program appends to may drop a torn last line."""


def parse_json(text: str, where: str) -> Any:
    """`text` parsed as JSON; malformed or too deeply nested JSON (a RecursionError) is a UserError naming `where`
    (a file, or file:line) and the position."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = f"line {e.lineno} column {e.colno}" if "\n" in text.strip() else f"column {e.colno}"
        raise MalformedJSON(f"{where}: malformed JSON at {at}: {e.msg}") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply to read; flatten it") from None


def read_json(path: Path) -> Any:
    """Parse one JSON document, with the file and position in any error."""
    return parse_json(read_user_text(path), str(path))


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
    for n, line in enumerate(read_user_text(path).splitlines(), 1):
        if line.strip():
            yield n, parse_json(line, f"{path}:{n}")


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    """Write rows as jsonl atomically (streamed to a temp file, fsync, rename), so a crash never leaves half a
    file."""
    write_text_atomic(path, (json.dumps(row) + "\n" for row in rows))


def _replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """The one way this program (re)writes a file: `write(tmp)` fills a temp file beside `path`, which is then
    fsynced and renamed over `path`. A crash or a full disk leaves either the old file or the new one, never an
    empty or half-written one; a symbolic link at `path` is replaced itself, never written through."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _publish_mode(tmp)
        os.replace(tmp, path)
    except OSError as e:  # name the file the user asked for, not the temp file
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str | Iterable[str]) -> None:
    """Replace a file's content (a string, or pieces written as they come) atomically (`_replace_atomically`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines([text] if isinstance(text, str) else text)

    _replace_atomically(path, write)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace a file's bytes atomically (`_replace_atomically`)."""
    _replace_atomically(path, lambda tmp: tmp.write_bytes(data))


def save_tensors(tensors: dict[str, Any], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors' `save_file`, atomically (`_replace_atomically`), with a failed write (full disk, read-only
    folder, ...) raised as the OSError it is rather than safetensors' own error type, so callers and the CLI treat
    it like every filesystem error."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            n = int(code.group(1))
            raise OSError(n, os.strerror(n), str(tmp)) from None

    _replace_atomically(path, write)


def _open_own(path: Path, flags: int, mode: int) -> int:
    """`os.open` of a file this program keeps growing or locking, never through a symbolic link (a link there is a
    UserError naming it)."""
    try:
        return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), mode)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise UserError(
            f"{path}: is a symbolic link; this program never writes through links: replace it by the file itself, "
            "or choose another --out"
        ) from None


def open_append(path: Path) -> IO[str]:
    """`path` opened for appending text (created if missing, in a folder that must exist), never through a symbolic
    link."""
    return os.fdopen(_open_own(Path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666), "a", encoding="utf-8")


def append_jsonl(path: Path, rows: Iterable[Any]) -> None:
    """Append rows to a jsonl file this program grows (a crash can tear only the last line, which
    `read_jsonl_tolerant` drops), flushed to disk."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open_append(path) as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl_tolerant(path: Path) -> list[Any]:
    """The objects of a jsonl file this program appends to, dropping a torn last line (what a crash or a full disk
    leaves); a bad line elsewhere is a UserError naming it."""
    lines = [ln for ln in read_user_text(path).splitlines() if ln.strip()]
    out = []
    for n, line in enumerate(lines, 1):
        try:
            out.append(parse_json(line, f"{path}:{n}"))
        except MalformedJSON:
            if n == len(lines):
                break
            raise
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
MAX_IMAGE_SIDE = 4096  # the largest image side read (16 Mpx): world canvases are at most 128 px, so a larger image
# is a mistake or a decompression bomb, refused from its header before any pixel is decoded


def load_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """Load an image as RGB uint8 [H, W, 3]; wrong mode, wrong size, truncated or non-image files are UserErrors.

    RGBA must be fully opaque and P (palette) images are expanded; grey-scale modes carry no colour and are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: image not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked here instead
            im = Image.open(path)
        with im:
            if max(im.size) > MAX_IMAGE_SIDE:
                raise UserError(
                    f"{path}: image is {im.size[0]}x{im.size[1]} px, larger than the {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} "
                    "this program reads; world images are at most 128 px, so resize it or pick the right file"
                )
            im.load()
            mode = im.mode
            if mode not in _LOSSLESS_COLOUR_MODES:
                raise UserError(
                    f"{path}: image mode is {mode!r}, but colours are needed; save it as RGB (e.g. im.convert('RGB'))"
                )
            rgba = np.asarray(im.convert("RGBA"))
    except UnidentifiedImageError:
        raise UserError(f"{path}: not a readable image file") from None
    except Image.DecompressionBombError:
        raise UserError(
            f"{path}: image is far larger than the {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} px this program reads; world "
            "images are at most 128 px, so resize it or pick the right file"
        ) from None
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
    """Save an RGB uint8 array as PNG (lossless, so the parser reads back exactly what was drawn), atomically
    (`_replace_atomically`: a full disk leaves the old file, a link at `path` is replaced, not written through)."""
    _replace_atomically(path, lambda tmp: Image.fromarray(image, "RGB").save(tmp, format="PNG"))


def guard_output(path: Path, force: bool) -> None:
    """Refuse to overwrite an existing file or symbolic link, or a non-empty folder, unless `force` is set."""
    path = Path(path)
    if force or not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and not any(path.iterdir()):
        return
    kind = "folder" if path.is_dir() else "symbolic link" if path.is_symlink() else "file"
    raise UserError(f"{path}: {kind} already exists; pass --force to overwrite it or choose another --out")


def _remove(path: Path) -> None:
    """Remove a file, a folder or a symbolic link (the link itself, never what it points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def claim_output(out: Path, owned: list[str], *, force: bool) -> None:
    """Refuse a non-empty `out` unless `force` (as `guard_output`); with it, remove what an earlier run of the same
    command wrote there (the `owned` names), so no stale file stays beside the new ones. Other files are kept."""
    guard_output(out, force)
    for name in owned:
        _remove(Path(out) / name)


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (assumed so where the OS cannot tell)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep_stale(path: Path) -> None:
    """Remove the temp folders `.<name>.<pid>.<random>.tmp` of earlier writes to `path` whose process is gone (what a
    kill leaves of `atomic_folder`)."""
    prefix = f".{path.name}."
    for p in path.parent.iterdir():
        rest = p.name[len(prefix) :].split(".") if p.name.startswith(prefix) else []
        if len(rest) == 3 and rest[0].isdigit() and rest[2] == "tmp" and p.is_dir() and not p.is_symlink():
            if not _alive(int(rest[0])):
                shutil.rmtree(p, ignore_errors=True)


@contextmanager
def atomic_folder(path: Path, force: bool) -> Iterator[Path]:
    """Yield a temp folder `.<name>.<pid>.<random>.tmp` beside `path`; on success it replaces `path` (only if
    allowed; a symbolic link there is replaced itself), on failure it vanishes, and one a killed process left is
    swept by the next write to `path`.

    So an interrupted command never leaves a half-written output, and an existing one is only replaced with --force.
    """
    path = Path(path)
    guard_output(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"))
    try:
        yield tmp
        for p in (tmp, *tmp.rglob("*")):
            _publish_mode(p)
        _remove(path)
        os.replace(tmp, path)
    except OSError as e:  # a failed write inside names the file the user asked for, not its temp copy
        inner = Path(e.filename) if isinstance(e.filename, str) else None
        if inner is None or not inner.is_relative_to(tmp):
            raise
        raise OSError(e.errno, e.strerror, str(path / inner.relative_to(tmp))) from None
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
    fd = _open_own(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
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
