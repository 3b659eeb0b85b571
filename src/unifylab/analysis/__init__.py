"""Looking inside unified models: hidden-state capture, layer-wise modality alignment (mutual kNN, linear CKA),
matrix-Renyi entropy trajectories and response entropy, and per-layer gradient conflict between tasks."""

from unifylab.analysis.alignment import linear_cka, mutual_knn
from unifylab.analysis.entropy import renyi_entropy

KINDS = ("alignment", "entropy", "gradients")  # the analyses `unifylab analyze` and a study's `analyses` can run

__all__ = ["KINDS", "linear_cka", "mutual_knn", "renyi_entropy"]
