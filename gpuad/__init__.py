"""gpuad: tape-based automatic differentiation, eager, in TensorFlow 2's style,
on NumPy (CPU) or custom CUDA kernels (GPU).

>>> import gpuad as ad
>>> x = ad.Variable(3.0)
>>> with ad.GradientTape() as tape:
...     y = x ** 2
>>> tape.gradient(y, x)
<gpuad.Tensor: shape=(), dtype=float32, device=cpu, numpy=6.0>
"""
from . import devices
from .devices import device
from .dtypes import DType, as_dtype, float16, float32, float64, int8, int16, int32, int64, uint8
from .dtypes import bool  # noqa: A004
from .errors import InvalidArgumentError, OutOfMemoryError
from .tensor import Tensor, Variable, constant, convert_to_tensor, is_tensor
from .interop import from_dlpack
from .tape import GradientTape, UnconnectedGradients
from .ops.math import (
    abs, add, add_n, argmax, argmin, cast, clip_by_value, cos, divide, equal, erf, exp, expm1,
    floor, floordiv, floormod, greater, greater_equal, less, less_equal, log, log1p, logical_and,
    logical_not, logical_or, matmul, maximum, minimum, mod, multiply, negative, norm, not_equal,
    pow, reciprocal, reduce_all, reduce_any, reduce_logsumexp, reduce_max, reduce_mean,
    reduce_min, reduce_prod, reduce_sum, round, rsqrt, sigmoid, sign, sin, sqrt, square,
    squared_difference, subtract, tan, tanh, tensordot, where,
)
from .ops.array import (
    broadcast_to, concat, expand_dims, gather, identity, matrix_transpose, reshape, split,
    squeeze, stack, stop_gradient, tile, transpose, unstack,
)
from .ops.creation import eye, fill, linspace, one_hot, ones, ones_like, range, zeros, zeros_like
from .ops import operators as _operators  # noqa: F401
from . import nn, random, nest
from . import optimizers
from .module import Module
from .io import save, load
from .autodiff import custom_gradient, gradients_function, grad, value_and_grad
from .function import function, Function, TensorSpec
from .control_flow import cond, while_loop

__version__ = "0.1.0"
