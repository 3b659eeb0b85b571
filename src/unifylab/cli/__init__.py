"""The `unifylab` command line (typer). User errors print one `error: ...` line on stderr and exit 2."""

from __future__ import annotations

import errno
import sys

import typer

from unifylab.cli.analyze import analyze_app
from unifylab.cli.data import data_app
from unifylab.cli.eval import compare_cmd, eval_cmd
from unifylab.cli.generate import generate_app
from unifylab.cli.score import score_app
from unifylab.cli.study import study_cmd
from unifylab.cli.tokenizer import tokenizer_app
from unifylab.cli.train import train_cmd
from unifylab.cli.world import world_app
from unifylab.errors import UserError
from unifylab.runtime import single_thread_blas

app = typer.Typer(add_completion=False, no_args_is_help=True, help="A lab for unified multimodal models.")

app.command("train")(train_cmd)
app.command("eval")(eval_cmd)
app.command("compare")(compare_cmd)
app.command("study")(study_cmd)
app.add_typer(world_app, name="world")
app.add_typer(data_app, name="data")
app.add_typer(score_app, name="score")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(analyze_app, name="analyze")
app.add_typer(generate_app, name="generate")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; user and usage errors become one `error:` line and exit code 2."""
    single_thread_blas()
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="unifylab", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into an exit code when not in standalone mode
            print("error: interrupted", file=sys.stderr)
        if isinstance(code, int):
            return code
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, read-only or missing folder, a file where a folder should be, ...
        print(f"error: {os_error(e)}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if not (hasattr(e, "format_message") and hasattr(e, "exit_code")):
            raise
        # a click usage error (typer may vendor its own click, so match by interface, not class)
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = e.format_message() or "missing command or argument"
        print(f"error: {message}{hint}", file=sys.stderr)
        return 2
    return 0


def os_error(e: OSError) -> str:
    """One line for a filesystem error: what failed, on which path, and that finished work is kept."""
    name = errno.errorcode.get(e.errno or 0, "")
    where = f"{e.filename}: " if e.filename else ""
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return f"{where}a file stands where a folder is needed ({name}); choose another --out"
    return (
        f"{where}{e.strerror or e} ({name}); every file written before was written whole (atomic writes), and "
        "finished runs, checkpoints and scored items are kept: fix the cause and re-run to resume"
    )


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
