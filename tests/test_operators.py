"""Operator tables: bytes follow from the shape the operator runs at."""

from __future__ import annotations

import pytest
from conftest import make_h100_spec, make_profile

from gpusim.hardware.rates import gpu_rates
from gpusim.kernels import elementwise_cost
from gpusim.kernels.operators import Tensor, operator
from gpusim.spec.base import Dtype
from gpusim.spec.workload import ElementwiseOp
from gpusim.workloads.moe.layer import LayerGeometry
from gpusim.workloads.moe.operators import DEEPEP_LAYOUT, PERMUTE, ROUTER, UNPERMUTE, layer_sizes

SIZES = {"t": 1000, "k": 2, "e": 16, "id": 8, "prob": 4}


def test_tensor_is_its_dimensions_times_its_element() -> None:
    assert Tensor.parse("t k id").bytes(SIZES) == 1000 * 2 * 8
    assert Tensor.parse("prob").bytes(SIZES) == 4  # a scalar
    with pytest.raises(ValueError):
        Tensor.parse("  ")
    with pytest.raises(KeyError):
        Tensor.parse("t x id").bytes(SIZES)  # a symbol the sizes do not define


def test_operator_sums_its_tensors_and_runs_as_one_memory_bound_kernel() -> None:
    topk = operator("topk", reads="t e prob", writes="t k prob, t k id")
    assert topk.bytes_read(SIZES) == 1000 * 16 * 4
    assert topk.bytes_written(SIZES) == 1000 * 2 * (4 + 8)
    rates = gpu_rates(make_h100_spec(), make_profile())
    cost = topk.cost(SIZES, rates)
    plain = elementwise_cost(ElementwiseOp(bytes_read=64_000, bytes_written=24_000), rates)
    assert cost.name == "topk"
    assert cost.time_s == plain.time_s and cost.hbm_bytes == plain.hbm_bytes


def test_flops_scale_with_the_largest_tensor() -> None:
    softmax = operator("softmax", reads="t e prob", writes="t e prob", flops_per_element=5)
    assert softmax.flops(SIZES) == 5 * 1000 * 16
    assert operator("copy", reads="t e prob", writes="t e prob").flops(SIZES) == 0.0


@pytest.mark.parametrize("cf", [None, 1.25])
def test_router_bytes_grow_linearly_with_tokens(cf: float | None) -> None:
    # every router tensor has the tokens as a dimension or none at all: doubling T adds exactly
    # the token-proportional bytes a second time
    def total(tokens: int) -> int:
        g = LayerGeometry(
            gpus=["a", "b"],
            tokens_per_gpu=tokens,
            hidden=256,
            intermediate=256,
            experts=8,
            top_k=2,
            capacity_factor=cf,
            dtype=Dtype.bf16,
        )
        sizes = layer_sizes(g, Dtype.bf16)
        ops = (*ROUTER, *PERMUTE, UNPERMUTE, DEEPEP_LAYOUT)
        return sum(op.bytes_read(sizes) + op.bytes_written(sizes) for op in ops)

    fixed = 2 * total(1024) - total(2048)  # bytes that do not scale with tokens
    assert 0 < fixed < total(1024) / 100
    assert total(4096) == 4 * total(1024) - 3 * fixed
