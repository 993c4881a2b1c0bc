"""Kernel cost closed forms: GEMM waves and split-K, elementwise, null, memcpy."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from conftest import make_h100_spec, make_profile

from gpusim.hardware.rates import GPURates, gpu_rates
from gpusim.kernels import (
    elementwise_cost,
    gemm_cost,
    gemm_plan,
    kernel_cost,
    memcpy_time_s,
    null_cost,
)
from gpusim.spec.base import Dtype
from gpusim.spec.profile import InstructionPath
from gpusim.spec.workload import ElementwiseOp, GemmOp, NullOp

# Fixture values (conftest defaults): H100 SXM5 spec; profile hbm 0.9, wgmma large 0.75,
# skinny 0.5, mma_sync x0.6, cuda cores 0.7, kernel floor 2 us.
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


def test_gemm_one_full_wave(rates: GPURates) -> None:
    # 1536 x 1408 with 128 x 128 tiles: 12 * 11 = 132 tiles = one wave on 132 SMs.
    op = GemmOp(m=1536, n=1408, k=4096)
    per_sm_rate = BF16_PEAK * 0.75 / SMS
    per_tile_s = 2 * 128 * 128 * 4096 / per_sm_rate
    cost = gemm_cost(op, rates)
    assert cost.blocks == 132
    assert cost.compute_time_s == pytest.approx(per_tile_s, rel=1e-12)


def test_gemm_one_tile_over_the_sm_count_takes_two_waves(rates: GPURates) -> None:
    # 896 x 2432 with 128 x 128 tiles: 7 * 19 = 133 tiles = 132 + 1 -> two waves.
    full = gemm_cost(GemmOp(m=1536, n=1408, k=4096), rates)
    over = gemm_cost(GemmOp(m=896, n=2432, k=4096), rates)
    plan = gemm_plan(GemmOp(m=896, n=2432, k=4096), rates)
    assert (plan.tile_m, plan.tile_n, plan.split_k) == (128, 128, 1)
    assert over.blocks == 133
    assert plan.waves == 2
    assert over.compute_time_s == pytest.approx(2 * full.compute_time_s, rel=1e-12)
    # Useful work grew by under 1 %, the compute time doubled: the tail effect.
    assert over.flops / full.flops == pytest.approx(133 / 132, rel=1e-12)


def test_gemm_large_is_roofline_at_achievable_rates(rates: GPURates) -> None:
    # 8192^3 bf16: 64 * 64 = 4096 tiles -> ceil(4096 / 132) = 32 waves of 128x128x8192 tiles.
    op = GemmOp(m=8192, n=8192, k=8192)
    cost = gemm_cost(op, rates)
    per_tile_s = 2 * 128 * 128 * 8192 / (BF16_PEAK * 0.75 / SMS)
    assert cost.compute_time_s == pytest.approx(32 * per_tile_s, rel=1e-12)
    assert cost.hbm_bytes == 2 * 3 * 8192 * 8192
    assert cost.time_s == pytest.approx(FLOOR_S + 32 * per_tile_s, rel=1e-12)
    assert cost.lower_bound_s == pytest.approx(2 * 8192**3 / BF16_PEAK, rel=1e-12)


def test_gemm_skinny_uses_split_k(rates: GPURates) -> None:
    # m = 64 (skinny): 64 x 128 tiles -> 1 * 8 = 8 output tiles on 132 SMs; K = 16384.
    op = GemmOp(m=64, n=1024, k=16384)
    plan = gemm_plan(op, rates)
    assert plan.shape == "skinny"
    assert (plan.tile_m, plan.tile_n) == (64, 128)
    assert plan.output_tiles == 8
    assert 1 < plan.split_k <= 132 // 8
    cost = gemm_cost(op, rates)
    compulsory = 2 * (64 * 16384 + 16384 * 1024 + 64 * 1024)
    partials = 2 * plan.split_k * 64 * 1024 * 4
    assert cost.hbm_bytes == compulsory + partials
    iters = math.ceil(math.ceil(16384 / 64) / plan.split_k)
    per_cta_s = 2 * 64 * 128 * 64 * iters / (BF16_PEAK * 0.5 / SMS)
    assert cost.compute_time_s == pytest.approx(per_cta_s, rel=1e-12)  # one wave
    # Without split-K the 8 CTAs would each run the whole K.
    no_split_s = FLOOR_S + max(
        2 * 64 * 128 * 16384 / (BF16_PEAK * 0.5 / SMS), compulsory / HBM_ACHIEVABLE
    )
    assert cost.time_s < no_split_s


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
def test_fewer_sms_never_faster(rates: GPURates, op: GemmOp) -> None:
    for sms in (132, 100, 66, 33, 17, 8, 2):
        half = gemm_cost(op, rates, sms=max(1, sms // 2))
        assert half.time_s >= gemm_cost(op, rates, sms=sms).time_s
    times = [gemm_cost(op, rates, sms=s).time_s for s in range(1, SMS + 1)]
    assert all(b <= a for a, b in pairwise(times))


def test_halving_sms_doubles_compute_of_a_full_wave(rates: GPURates) -> None:
    # 132 tiles on 66 SMs: 2 waves instead of 1.
    op = GemmOp(m=1536, n=1408, k=4096)
    full = gemm_cost(op, rates)
    half = gemm_cost(op, rates, sms=66)
    assert half.compute_time_s == pytest.approx(2 * full.compute_time_s, rel=1e-12)


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
    when the op asks for the default wgmma path, and cost what the profile charges that path."""
    op = GemmOp(m=4096, n=4096, k=4096)
    hopper = gpu_rates(make_h100_spec(), make_profile())
    ampere = gpu_rates(make_h100_spec(compute_capability="8.0"), make_profile())
    assert gemm_cost(op, hopper).name.endswith("_wgmma")
    assert gemm_cost(op, ampere).name.endswith("_mma_sync")
    assert "wgmma" not in gemm_cost(op, ampere).name
    assert gemm_cost(op, ampere).compute_time_s == gemm_cost(op, hopper).compute_time_s
    legacy = GemmOp(m=4096, n=4096, k=4096, path=InstructionPath.mma_sync)
    assert gemm_cost(legacy, hopper).name.endswith("_mma_sync")
