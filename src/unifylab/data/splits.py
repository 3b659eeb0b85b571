"""Scene-level splits: a fixed share of scene identities is reserved for evaluation and never trained on, so an
evaluation built from reserved scenes is held out by construction (by identity, not by sampling luck)."""

from __future__ import annotations

import hashlib
from typing import Any

EVAL_SCENE_SHARE = 0.1  # share of scene identities kept out of every training stream


def is_eval_scene(scene: Any) -> bool:
    """True for the reserved scenes (by the hash of a scene of any world's `key()`, its identity): evaluation draws
    only these, training never does."""
    digest = hashlib.blake2b(scene.key().encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < EVAL_SCENE_SHARE * 2**64
