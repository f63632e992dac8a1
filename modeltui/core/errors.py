"""Errors the user sees: each carries one clear, complete sentence."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut to ``limit`` characters."""
    lines = str(e).strip().splitlines()
    return lines[0][:limit] if lines else type(e).__name__


class ModelTuiError(Exception):
    """Base class: the message is meant for the user as it is."""


class TargetError(ModelTuiError):
    """A TARGET or option could not be turned into a model."""


class CheckpointError(TargetError):
    """A checkpoint file is malformed, truncated or of an unknown kind."""


class UnsafeCheckpointError(TargetError):
    """A checkpoint asks for code execution and --trust was not given."""

    def __init__(self, message: str, found: list[str] | None = None):
        super().__init__(message)
        self.found = list(found or [])


class StatsError(ModelTuiError):
    """Statistics cannot be computed for a tensor (meta, uninitialised...)."""


class Cancelled(Exception):
    """A long computation was cancelled by its caller."""
