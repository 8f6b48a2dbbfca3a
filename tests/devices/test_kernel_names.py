"""One name per primitive: the device protocol's op names are the primitives' names
(gpuad/ops/table.py), and the CUDA kernels that run an op have that name in their
symbol, so grepping a primitive finds its row, its protocol entry and its kernels."""
import os
import re
import shutil

import pytest

from gpuad.devices import KERNEL_SET
from gpuad.ops.table import PRIMITIVES

#: Families whose ops run kernels named after the op (layout and concat run the
#: layout_copy kernels, matmul runs cuBLAS).
NAMED_KERNELS = ("unary", "binary", "unary_grad", "where", "cast", "fill", "reduce", "arg_reduce", "gather",
                 "one_hot", "softmax", "softmax_xent", "random", "optim")


def test_every_primitive_calls_its_kernel_by_its_own_name():
    """A row names only its family: the kernel is looked up by the row's name."""
    rows = [p for p in PRIMITIVES.values() if p.family is not None]
    assert rows
    assert [p.name for p in rows if p.name not in KERNEL_SET[p.family]] == []


def test_every_op_of_the_kernel_set_is_a_primitive():
    """All but the optimizer rules, which the ``apply_update`` primitive runs by
    its ``rule`` attribute."""
    names = {p.name for p in PRIMITIVES.values()}
    assert sorted(f"{family}/{op}" for family, ops in KERNEL_SET.items() if family != "optim"
                  for op in ops if op not in names) == []


@pytest.mark.skipif(not shutil.which(os.environ.get("GPUAD_HOST_CXX", "g++")),
                    reason="the emulated device compiles the kernels with g++, which is missing")
def test_every_op_has_kernels_named_after_it():
    from gpuad.devices.emulated import HostLauncher
    symbols = HostLauncher().module().kernel_names
    missing = []
    for family in NAMED_KERNELS:
        for op in KERNEL_SET[family]:
            # the op's name, then the dtype: binary_less_f32_contig is less's, not less_equal's
            pattern = re.compile(rf"(^|_){op}_(f32|f64|i32|i64|b8)(_|$)")
            if not any(pattern.search(s) for s in symbols):
                missing.append(f"{family}/{op}")
    assert missing == []
