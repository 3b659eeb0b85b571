"""Whether a run folder may take a config: a new or empty folder, or a run of this very config (which then resumes);
an unfinished run with a checkpoint may also resume with another optim.lr. Anything else is refused before a byte
is written."""

from __future__ import annotations

from unifylab.config import first_diff
from unifylab.errors import UserError
from unifylab.io import LOCK
from unifylab.layout import OWNER, RunFolder
from unifylab.train import checkpoint as C
from unifylab.train.config import TrainConfig, dump_config, load_config


def config_change(run: RunFolder, cfg: TrainConfig) -> str | None:
    """How the config saved in a run folder differs from `cfg` ('field: old there, new now'); None when the folder
    holds no config or the same one."""
    saved = run.config
    if not saved.is_file() or saved.read_bytes() == dump_config(cfg).encode():
        return None
    old, now = load_config(saved).model_dump(mode="json"), cfg.model_dump(mode="json")
    return None if old == now else first_diff(old, now)  # equal up to keys an older unifylab did not write


def _lr_only(run: RunFolder, cfg: TrainConfig) -> bool:
    """Whether the saved config differs from `cfg` in optim.lr alone and the run is unfinished with a checkpoint:
    the one change a resume allows (after a divergence, from the last good checkpoint with a lower rate)."""
    old = load_config(run.config)
    same = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"lr": old.optim.lr})})
    return dump_config(same) == dump_config(old) and not run.finished and bool(C.list_checkpoints(run.path))


def check_run_dir(run: RunFolder, cfg: TrainConfig) -> None:
    """A run folder is either new/empty, or a run of this very config (then it resumes); an unfinished run may
    resume with another optim.lr."""
    if run.config.is_file():
        if (diff := config_change(run, cfg)) and not _lr_only(run, cfg):
            raise UserError(
                f"{run.path}: holds a run with a different config ({diff}); resume with the same config "
                "or choose another --out"
            )
    elif run.path.exists() and any(p.name not in (LOCK, OWNER) for p in run.path.iterdir()):
        raise UserError(
            f"{run.path}: folder exists and is not a unifylab run (no {run.config.name}); choose another --out"
        )
