"""The training forms (the tasks a training mixture draws its examples from) and the side each trains: understanding
(a text answer) or generation (an image); training builds its streams from them, evaluation reads which side taught
a task."""

from __future__ import annotations

UND_TASKS = ("caption", "vqa", "knowledge", "rewrite", "move_ask")
GEN_TASKS = ("t2i", "draw_named", "move_draw", "move_to")
# Stream order (a mixture draws task ids over this tuple): tasks added later go last, so a config that does not use
# them draws exactly the examples it drew before they existed.
TASKS = ("caption", "vqa", "t2i", "knowledge", "rewrite", "draw_named", "move_ask", "move_draw", "move_to")
TEXT_TASKS = ("knowledge", "rewrite")  # understanding tasks without an image (the rewrite sequence form)
EDIT_TASKS = ("move_draw", "move_to")  # generation tasks that edit an image (the edit sequence form)
# the sides (of data.facts / data.moves) whose facts or directions a task teaches
FACT_TASKS = {"knowledge": ("und", "both"), "rewrite": ("und", "both"), "draw_named": ("gen", "both")}
MOVE_TASKS = {"move_ask": ("und", "both"), "move_draw": ("gen", "both")}
TRANSFER_TASKS = (*FACT_TASKS, *MOVE_TASKS, "move_to")  # the transfer design's forms (world.knowledge, world.skills)
MODE_TASKS = {"unified": TASKS, "und-only": UND_TASKS, "gen-only": GEN_TASKS}  # the forms each `data.mode` trains
