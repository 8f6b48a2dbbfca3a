"""The exception types gpuad raises beyond Python's own."""

__all__ = ["InvalidArgumentError"]


class InvalidArgumentError(ValueError):
    """An op got arguments it cannot compute with: mismatched dtypes, shapes,
    devices, or a bad axis. Like TensorFlow's error of the same name; a
    ``ValueError`` so ``except ValueError`` catches it too.

    The message names the op as ``[Op:name]`` at its end.
    """

    def __init__(self, message: str, op: str | None = None):
        self.op = op
        super().__init__(f"{message} [Op:{op}]" if op else message)
