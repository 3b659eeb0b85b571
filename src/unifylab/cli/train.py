"""`unifylab train`: train a unified or specialist model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from unifylab.cli.common import _out, err


def train_cmd(
    config: Annotated[Path | None, typer.Argument(metavar="CONFIG.yaml", help="Training config (YAML).")] = None,
    out: Annotated[Path, _out("Run folder; re-running with it resumes from its last checkpoint.")] = ...,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override a config key, e.g. --set optim.lr=1e-3.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
) -> None:
    """Train a unified or specialist model (resumes when RUN holds a checkpoint); torchrun for several processes."""
    from unifylab.train import Trainer, load_config
    from unifylab.train.distributed import shutdown

    cfg = load_config(config, set_ or [])
    trainer = Trainer(cfg, out, err, progress=not quiet)
    try:
        summary = trainer.fit()
    finally:
        shutdown(trainer.dist)
    if trainer.dist.main:
        loss = ", ".join(f"{k} {v:.3f}" for k, v in summary["final"].items() if not k.startswith("exact/"))
        exact = ", ".join(
            f"{k.removeprefix('exact/')} {v:.3f}" for k, v in summary["final"].items() if k.startswith("exact/")
        )
        err.print(
            f"trained {summary['steps']} steps ({summary['tokens_seen']:,} tokens) -> {out}; held-out loss: "
            f"{loss}; greedy-exact: {exact}"
        )
