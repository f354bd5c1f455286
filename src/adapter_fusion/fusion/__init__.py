"""Fusion of several trained adapters (AdapterFusion, Pfeiffer et al., EACL 2021, arXiv 2005.00247).

One module per method, each registered by name in ``FUSION_METHODS``; ``FusionConfig`` describes a fusion,
``build_fusion``/``add_fusion`` turn it into a ``Fuse`` composition on a model's ``AdapterManager``.
Importing this package imports (and so registers) every method module.
"""

from adapter_fusion.fusion.attention import AttentionFusion
from adapter_fusion.fusion.base import FusionLayer, FusionOutput
from adapter_fusion.fusion.composition import (
    Fuse,
    add_fusion,
    build_fusion,
    load_fusion_adapters,
    remove_fusion,
    train_fusion,
)
from adapter_fusion.fusion.config import FusionConfig
from adapter_fusion.fusion.continual import ExtendedFusion, TaskFuse, extend_fusion
from adapter_fusion.fusion.gating import GatingFusion
from adapter_fusion.fusion.hierarchy import (
    FusionNode,
    HierarchicalFuse,
    HierarchyConfig,
    add_hierarchy,
    build_hierarchy,
)
from adapter_fusion.fusion.registry import FUSION_METHODS, FusionMethod, FusionPoint
from adapter_fusion.fusion.sparse import SparseFusion
from adapter_fusion.fusion.weighted import WeightedFusion

__all__ = [
    "FUSION_METHODS",
    "AttentionFusion",
    "ExtendedFusion",
    "Fuse",
    "FusionConfig",
    "FusionLayer",
    "FusionMethod",
    "FusionNode",
    "FusionOutput",
    "FusionPoint",
    "GatingFusion",
    "HierarchicalFuse",
    "HierarchyConfig",
    "SparseFusion",
    "TaskFuse",
    "WeightedFusion",
    "add_fusion",
    "add_hierarchy",
    "build_fusion",
    "build_hierarchy",
    "extend_fusion",
    "load_fusion_adapters",
    "remove_fusion",
    "train_fusion",
]
