"""modeltui's core: torch (and safetensors, numpy) only, never textual or rich.

Importing this package is cheap: torch is imported by the functions that need
it, so a checkpoint header can be listed before torch has loaded.
"""

from modeltui.core.errors import (
    Cancelled,
    CheckpointError,
    ModelTuiError,
    StatsError,
    TargetError,
    UnsafeCheckpointError,
)
from modeltui.core.inputs import InputSpec, parse_input_spec
from modeltui.core.structure import ModelInfo, ModuleInfo, TensorInfo
from modeltui.core.targets import Opened, WeightsReport, open_module, open_target

__all__ = [
    "Cancelled",
    "CheckpointError",
    "InputSpec",
    "ModelInfo",
    "ModelTuiError",
    "ModuleInfo",
    "Opened",
    "StatsError",
    "TargetError",
    "TensorInfo",
    "UnsafeCheckpointError",
    "WeightsReport",
    "open_module",
    "open_target",
    "parse_input_spec",
]
