"""Scene-level splits: a fixed share of scene identities is reserved for evaluation and never trained on, so an
evaluation built from reserved scenes is held out by construction (by identity, not by sampling luck)."""

from __future__ import annotations

import hashlib

from unifylab.world.shapes.scene import Scene
from unifylab.world.watch.face import WatchScene

EVAL_SCENE_SHARE = 0.1  # share of scene identities kept out of every training stream


def scene_key(scene: Scene | WatchScene) -> str:
    """The scene's identity: canvas, grid and the sorted objects (confidences ignored); a watch face's JSON."""
    if isinstance(scene, WatchScene):
        return scene.to_json()
    objs = ";".join(f"{o.row},{o.col},{o.shape},{o.color},{o.size}" for o in scene.objects)
    return f"{scene.world}:{scene.size}:{scene.grid}:{objs}"


def is_eval_scene(scene: Scene | WatchScene) -> bool:
    """True for the reserved scenes: evaluation draws only these, training never does."""
    digest = hashlib.blake2b(scene_key(scene).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") < EVAL_SCENE_SHARE * 2**64
