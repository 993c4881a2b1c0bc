"""Kernel cost closed forms: GEMM waves and split-K, elementwise, null, memcpy."""

from __future__ import annotations

from itertools import pairwise

import pytest
from conftest import make_h100_spec, make_profile

from gpusim.hardware.rates import GPURates, gpu_rates
from gpusim.kernels import (
    elementwise_cost,
    gemm_cost,
    kernel_cost,
    memcpy_time_s,
    null_cost,
)
from gpusim.spec.base import Dtype
from gpusim.spec.profile import InstructionPath
from gpusim.spec.workload import ElementwiseOp, GemmOp, NullOp

# Fixture values (conftest defaults): H100 SXM5 spec; profile hbm 0.9, wgmma 0.75, mma_sync
# x0.6, cuda cores 0.7, kernel floor 2 us. GEMM closed forms: tests/test_gemm_mainloop.py.
BF16_PEAK = 989.4e12
HBM_NAMEPLATE = 3350e9
HBM_ACHIEVABLE = 3350e9 * 0.9
FP32_CUDA_PEAK = 66.9e12
FLOOR_S = 2e-6
SMS = 132

SHAPES = [
    GemmOp(m=8192, n=8192, k=8192),
    GemmOp(m=4096, n=1024, k=512),
    GemmOp(m=1536, n=1408, k=4096),
    GemmOp(m=896, n=2432, k=4096),
    GemmOp(m=16, n=4096, k=4096),
    GemmOp(m=4096, n=8, k=11008),
    GemmOp(m=64, n=1024, k=16384),
    GemmOp(m=1, n=1, k=1),
    GemmOp(m=300, n=70, k=129, dtype=Dtype.fp8),
    GemmOp(m=2048, n=2048, k=2048, path=InstructionPath.mma_sync),
    GemmOp(m=512, n=512, k=65536, dtype=Dtype.tf32),
]


def _gemm_id(op: GemmOp) -> str:
    return f"{op.m}x{op.n}x{op.k}-{op.dtype}-{op.path}"


@pytest.fixture
def rates() -> GPURates:
    return gpu_rates(make_h100_spec(), make_profile())


@pytest.mark.parametrize("op", SHAPES, ids=_gemm_id)
def test_gemm_flops_are_2mnk(rates: GPURates, op: GemmOp) -> None:
    assert gemm_cost(op, rates).flops == 2 * op.m * op.n * op.k


@pytest.mark.parametrize("op", SHAPES, ids=_gemm_id)
def test_lower_bound_at_most_time(rates: GPURates, op: GemmOp) -> None:
    for sms in (1, 7, 66, SMS):
        cost = gemm_cost(op, rates, sms=sms)
        assert 0 < cost.lower_bound_s <= cost.time_s


@pytest.mark.parametrize(("m", "n"), [(4096, 4096), (16, 4096), (1024, 8), (256, 256), (1, 1)])
def test_gemm_time_monotone_in_k(rates: GPURates, m: int, n: int) -> None:
    ks = [*range(1, 600), *range(600, 40000, 97)]
    times = [gemm_cost(GemmOp(m=m, n=n, k=k), rates).time_s for k in ks]
    assert all(b >= a for a, b in pairwise(times))
    assert times[-1] > times[0]


@pytest.mark.parametrize("op", SHAPES, ids=_gemm_id)
def test_more_hbm_bandwidth_never_slower(op: GemmOp) -> None:
    spec = make_h100_spec()
    for slow_eff, fast_eff in ((0.3, 0.6), (0.6, 0.9), (0.9, 1.0)):
        slow = gpu_rates(spec, make_profile(hbm_efficiency=slow_eff))
        fast = gpu_rates(spec, make_profile(hbm_efficiency=fast_eff))
        assert gemm_cost(op, fast).time_s <= gemm_cost(op, slow).time_s
    ew = ElementwiseOp(bytes_read=10**8, bytes_written=10**8, flops=1e9)
    slow_r = gpu_rates(make_h100_spec(hbm_bw_GBps=2000.0), make_profile())
    fast_r = gpu_rates(make_h100_spec(hbm_bw_GBps=4000.0), make_profile())
    assert elementwise_cost(ew, fast_r).time_s < elementwise_cost(ew, slow_r).time_s


@pytest.mark.parametrize("op", SHAPES, ids=_gemm_id)
def test_fewer_sms_never_faster_when_the_mma_bounds(op: GemmOp) -> None:
    # With an L2 too fast to bind, every CTA takes the same time on any SM count, so fewer SMs
    # only add waves. (An L2-bound GEMM can lose to a smaller grid by its tail wave, which then
    # runs MMA-bound on few SMs: tests/test_gemm_mainloop.py.)
    rates = gpu_rates(make_h100_spec(), make_profile(l2_near_GBps=1e9, l2_whole_GBps=1e9))
    times = [gemm_cost(op, rates, sms=s).time_s for s in range(1, SMS + 1)]
    assert all(b <= a * (1 + 1e-12) for a, b in pairwise(times))


def test_gemm_rejects_bad_sms(rates: GPURates) -> None:
    for sms in (0, -1, SMS + 1):
        with pytest.raises(ValueError, match="sms"):
            gemm_cost(GemmOp(m=128, n=128, k=128), rates, sms=sms)


def test_elementwise_is_floor_plus_bytes_over_achievable_hbm(rates: GPURates) -> None:
    op = ElementwiseOp(bytes_read=256 * 2**20, bytes_written=128 * 2**20)
    cost = elementwise_cost(op, rates)
    expected = FLOOR_S + (384 * 2**20) / HBM_ACHIEVABLE
    assert cost.time_s == pytest.approx(expected, rel=1e-12)
    assert cost.hbm_bytes == 384 * 2**20
    assert cost.lower_bound_s == pytest.approx((384 * 2**20) / HBM_NAMEPLATE, rel=1e-12)
    assert cost.lower_bound_s <= cost.time_s
    # 256 MiB / (256 threads * 16 B) = 65536 blocks wanted, capped at 8 resident blocks of 256
    # threads (2048 threads / 256) on each of 132 SMs = 1056.
    assert cost.blocks == 1056
    assert elementwise_cost(ElementwiseOp(bytes_read=4096, bytes_written=4096), rates).blocks == 1
    assert elementwise_cost(ElementwiseOp(bytes_read=0, bytes_written=0), rates).blocks == 1


def test_elementwise_compute_bound(rates: GPURates) -> None:
    op = ElementwiseOp(bytes_read=4096, bytes_written=4096, flops=1e12)
    cost = elementwise_cost(op, rates)
    assert cost.compute_time_s == pytest.approx(1e12 / (FP32_CUDA_PEAK * 0.7), rel=1e-12)
    assert cost.time_s == pytest.approx(FLOOR_S + 1e12 / (FP32_CUDA_PEAK * 0.7), rel=1e-12)
    assert cost.lower_bound_s == pytest.approx(1e12 / FP32_CUDA_PEAK, rel=1e-12)


def test_null_kernel_is_the_floor(rates: GPURates) -> None:
    cost = null_cost(rates)
    assert cost.time_s == pytest.approx(FLOOR_S, rel=1e-12)
    assert cost.flops == 0
    assert cost.hbm_bytes == 0
    assert cost.lower_bound_s == 0


def test_kernel_cost_dispatches(rates: GPURates) -> None:
    gemm = GemmOp(m=256, n=256, k=256)
    ew = ElementwiseOp(bytes_read=1000, bytes_written=1000)
    assert kernel_cost(gemm, rates) == gemm_cost(gemm, rates)
    assert kernel_cost(ew, rates) == elementwise_cost(ew, rates)
    assert kernel_cost(NullOp(), rates) == null_cost(rates)


@pytest.mark.parametrize("op", SHAPES, ids=_gemm_id)
def test_capped_hbm_flow_reproduces_time(rates: GPURates, op: GemmOp) -> None:
    # The DES runs the floor, then an HBM flow at min(achievable, hbm_bytes / compute_time_s).
    cost = gemm_cost(op, rates)
    flow_s = cost.hbm_bytes / min(HBM_ACHIEVABLE, cost.hbm_flow_cap_Bps)
    assert FLOOR_S + flow_s == pytest.approx(cost.time_s, rel=1e-12)


def test_memcpy_closed_form() -> None:
    assert memcpy_time_s(0, 50e9, 1e-6) == 1e-6
    assert memcpy_time_s(1e9, 50e9, 2e-6) == pytest.approx(2e-6 + 0.02, rel=1e-15)
    assert memcpy_time_s(64 * 2**20, 450e9, 0.0) == pytest.approx(64 * 2**20 / 450e9, rel=1e-15)
    with pytest.raises(ValueError, match="bw_Bps"):
        memcpy_time_s(1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="bytes_"):
        memcpy_time_s(-1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="latency_s"):
        memcpy_time_s(1.0, 1.0, -1e-6)


def test_gemm_kernel_is_named_after_the_path_the_device_has() -> None:
    """An A100 (compute capability 8.0) has no wgmma: its GEMM kernels are named mma_sync even
    when the op asks for the default wgmma path, and run the mma_sync path's rate and SM80
    tiles, exactly as an op asking for mma_sync does."""
    op = GemmOp(m=4096, n=4096, k=4096)
    hopper = gpu_rates(make_h100_spec(), make_profile())
    ampere = gpu_rates(make_h100_spec(compute_capability="8.0"), make_profile())
    assert gemm_cost(op, hopper).name.endswith("_wgmma")
    assert gemm_cost(op, ampere).name.endswith("_mma_sync")
    assert "wgmma" not in gemm_cost(op, ampere).name
    legacy = GemmOp(m=4096, n=4096, k=4096, path=InstructionPath.mma_sync)
    assert gemm_cost(op, ampere).compute_time_s == gemm_cost(legacy, ampere).compute_time_s
    assert gemm_cost(legacy, hopper).name.endswith("_mma_sync")
