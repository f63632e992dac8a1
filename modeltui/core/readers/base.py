"""What every reader returns: a :class:`Listing`, and a :class:`TensorSource` for the values.

Every source can :meth:`~TensorSource.check` that the files behind it have
not changed since they were opened (values, statistics, editing and saving
call it first), and registers the address ranges it maps with
:mod:`modeltui.core.readers.filewatch`, so the values and statistics of a
tensor nobody edited are read with ``pread`` instead of touching mapped pages.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modeltui.core.structure import ModelInfo

if TYPE_CHECKING:
    from torch import nn

    from modeltui.core.readers.containers import Container


class TensorSource:
    """Gives the values of a checkpoint's tensors on demand."""

    def get(self, name: str):  # -> torch.Tensor
        raise NotImplementedError

    def check(self) -> None:
        """Raise :class:`FileChangedError` if a file behind this source changed since it was opened.

        Cheap (one ``fstat`` per file): call it before reading values,
        statistics, making tensors editable or saving.
        """

    def close(self) -> None:
        pass


@dataclass
class Listing:
    """An opened checkpoint: its description and what gives its values."""

    info: ModelInfo
    module: nn.Module | None = None  # a pickled nn.Module (only with --trust)
    source: TensorSource | None = None
    container: Container | None = None  # for a training checkpoint: where the weights sit in it


def _paths(path: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if path is None:
        return []
    return [path] if isinstance(path, (str, os.PathLike)) else [os.fspath(p) for p in path]
