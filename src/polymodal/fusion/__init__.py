"""Multi-modal fusion: a declarative graph (`FusionSpec`), its ops, the model it builds, and a
functional API. See docs/fusion.md."""

from polymodal.fusion.functional import Ref, Tap, fuse
from polymodal.fusion.graph import FusionModel, inherit_weights
from polymodal.fusion.ops import FUSION_OPS
from polymodal.fusion.spec import FusionSpec, Node, block_key
from polymodal.models.missing import Without, drop_modalities, without

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
    "fuse",
    "inherit_weights",
    "without",
]
