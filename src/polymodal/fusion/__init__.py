"""Multi-modal fusion: a declarative graph (`FusionSpec`), its ops, the model it builds, and a
functional API. See docs/fusion.md."""

from polymodal.fusion.functional import Ref, Tap, fuse
from polymodal.fusion.graph import FusionModel, inherit_weights
from polymodal.fusion.missing import Without, drop_modalities, evaluate_run_missing, without
from polymodal.fusion.ops import FUSION_OPS
from polymodal.fusion.spec import FusionSpec, Node, block_key

__all__ = [
    "FUSION_OPS",
    "FusionModel",
    "FusionSpec",
    "Node",
    "Ref",
    "Tap",
    "Without",
    "block_key",
    "drop_modalities",
    "evaluate_run_missing",
    "fuse",
    "inherit_weights",
    "without",
]
