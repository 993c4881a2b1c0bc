"""The tensor-core mainloop (gpusim.kernels.mainloop) and the library GEMM built on it: each
bound in closed form, waves and their tail, the choice among the library's tiles, monotonicity,
operand bytes, and the counterfactuals the fitted tile rate used to get wrong."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from conftest import make_h100_spec, make_profile

from gpusim.hardware.rates import GPURates, gpu_rates
from gpusim.kernels.gemm import gemm_cost, gemm_plan, library_tiles, waves_time_s
from gpusim.kernels.grouped_gemm import grouped_gemm_cost
from gpusim.kernels.mainloop import CtaTile, MainloopShare, k_step_terms_s, sm_rates
from gpusim.kernels.tile_gemm import tile_gemm_time_s
from gpusim.spec.base import Dtype
from gpusim.spec.loading import load_profile, load_topology
from gpusim.spec.profile import InstructionPath
from gpusim.spec.workload import GemmOp

ROOT = Path(__file__).resolve().parents[1]
BF16_PEAK = 989.4e12
SMS = 132
SMEM_Bps = 128 * 1830e6
TILE = CtaTile(
    name="t", tile_m=128, tile_n=256, tile_k=64, warps_m=2, warps_n=1, stages=4, cluster_m=2
)


@pytest.fixture
def rates() -> GPURates:
    return gpu_rates(make_h100_spec(), make_profile())


def _terms(rates: GPURates, share: MainloopShare) -> tuple[float, float, float]:
    return k_step_terms_s(sm_rates(rates, InstructionPath.wgmma, Dtype.bf16), TILE, 2, share)


def test_each_bound_of_a_k_step_in_closed_form(rates: GPURates) -> None:
    mma, l2, smem = _terms(rates, MainloopShare(ctas_per_sm=1, streaming_ctas=SMS))
    assert mma == pytest.approx(2 * 128 * 256 * 64 / (BF16_PEAK * 0.75 / SMS), rel=1e-12)
    # the 2x1 cluster loads the 256-wide B slice once for two CTAs: (128 + 256 / 2) x 64 x 2 B
    step_B = (128 + 128) * 64 * 2
    assert l2 == pytest.approx(step_B / (6000e9 / SMS), rel=1e-12)  # the near rate, shared
    written, read = (128 + 256) * 64 * 2, (1 * 128 + 2 * 256) * 64 * 2
    assert smem == pytest.approx((written + read) / SMEM_Bps, rel=1e-12)
    # alone, a CTA draws what its 4 stages in flight allow over the 200 ns hit latency
    _, alone, _ = _terms(rates, MainloopShare(ctas_per_sm=1, streaming_ctas=1))
    assert alone == pytest.approx(step_B / (4 * step_B / 200e-9), rel=1e-12)


def test_a_hot_set_larger_than_a_partition_reads_at_the_whole_l2_rate() -> None:
    two = gpu_rates(make_h100_spec(l2_partitions=2), make_profile())
    sm = sm_rates(two, InstructionPath.wgmma, Dtype.bf16)
    assert sm.l2_read_Bps(25e6) == 6000e9 and sm.l2_read_Bps(25e6 + 1) == 4000e9


def test_waves_run_full_then_the_tail_with_its_own_l2_share(rates: GPURates) -> None:
    sm = sm_rates(rates, InstructionPath.wgmma, Dtype.bf16)
    mma, l2_full, smem = _terms(rates, MainloopShare(1, SMS))
    _, l2_tail, _ = _terms(rates, MainloopShare(1, 1))
    steps, fill, epi_B, hbm = 64, 300e-9, 128 * 256 * 2, 3350e9 * 0.9
    full = fill + steps * max(mma, l2_full, smem) + epi_B * SMS / hbm
    tail = fill + steps * max(mma, l2_tail, smem) + epi_B / hbm
    got = waves_time_s(sm, TILE, 2, SMS + 1, SMS, steps * 64, float(epi_B))
    assert got == pytest.approx(full + tail, rel=1e-12)
    assert tail < full  # L2-bound full waves: the lone tail CTA streams faster


def test_plan_is_the_best_library_candidate(rates: GPURates) -> None:
    op = GemmOp(m=3000, n=1000, k=2048)
    plan = gemm_plan(op, rates)
    sm = sm_rates(rates, InstructionPath.wgmma, Dtype.bf16)
    hbm_s = 2 * (3000 * 2048 + 2048 * 1000 + 3000 * 1000) / (3350e9 * 0.9)
    best = min(
        max(
            waves_time_s(
                sm,
                t,
                2,
                -(-rows // t.tile_m) * -(-cols // t.tile_n),
                SMS,
                -(-2048 // t.tile_k) * t.tile_k,
                float(t.tile_m * t.tile_n * 2),
            ),
            hbm_s,
        )
        for t in library_tiles(InstructionPath.wgmma, Dtype.bf16, rates.spec)
        for rows, cols in ((3000, 1000), (1000, 3000))
    )
    assert max(plan.compute_time_s, hbm_s) <= best * (1 + 1e-12)  # split-K can only help
    assert plan.tile in library_tiles(InstructionPath.wgmma, Dtype.bf16, rates.spec)


@pytest.mark.parametrize("dim", ["m", "n", "k"])
def test_gemm_time_is_monotone_in_each_dimension(rates: GPURates, dim: str) -> None:
    base = {"m": 1024, "n": 2048, "k": 1024}
    times = []
    for value in range(64, 8192 + 1, 64):
        shape = {**base, dim: value}
        times.append(gemm_cost(GemmOp(**shape), rates).time_s)
    assert all(b >= a * (1 - 1e-12) for a, b in pairwise(times))
    assert times[-1] > 2 * times[0]


def test_the_wave_tail_shows_where_the_tiles_pass_a_multiple_of_the_sms() -> None:
    # MMA-bound (an L2 too fast to bind): 132 CTAs of one tile fill one wave exactly, one CTA
    # more costs a second whole CTA time; the library GEMM of one row tile more cannot hide it
    # (its best other tile still leaves a partial wave), so its time jumps far more than its work.
    rates = gpu_rates(make_h100_spec(), make_profile(l2_near_GBps=1e9, l2_whole_GBps=1e9))
    sm = sm_rates(rates, InstructionPath.wgmma, Dtype.bf16)
    one_wave = waves_time_s(sm, TILE, 2, SMS, SMS, 4096, 0.0)
    assert waves_time_s(sm, TILE, 2, SMS + 1, SMS, 4096, 0.0) == pytest.approx(2 * one_wave)
    one = gemm_cost(GemmOp(m=128 * 132, n=256, k=4096), rates)
    two = gemm_cost(GemmOp(m=128 * 133, n=256, k=4096), rates)
    assert two.flops / one.flops == pytest.approx(133 / 132)
    assert two.compute_time_s > 1.3 * one.compute_time_s


def test_operand_and_hbm_bytes_are_what_the_ctas_read(rates: GPURates) -> None:
    op = GemmOp(m=4096, n=4096, k=4096)
    cost, plan = gemm_cost(op, rates), gemm_plan(op, rates)
    steps = plan.k_per_split // plan.tile.tile_k
    assert cost.l2_bytes == plan.tiles * steps * plan.tile.l2_step_bytes(2)
    assert cost.hbm_bytes == 2 * 3 * 4096 * 4096  # no split: A, B, C once
    assert cost.l2_bytes > cost.hbm_bytes  # every operand slice re-read by many CTAs


def test_more_l2_bandwidth_is_never_slower() -> None:
    ops = [GemmOp(m=8192, n=8192, k=8192), GemmOp(m=64, n=4096, k=4096)]
    for slow, fast in ((2000.0, 4000.0), (4000.0, 8000.0)):
        a = gpu_rates(make_h100_spec(), make_profile(l2_near_GBps=slow, l2_whole_GBps=slow))
        b = gpu_rates(make_h100_spec(), make_profile(l2_near_GBps=fast, l2_whole_GBps=fast))
        for op in ops:
            assert gemm_cost(op, b).time_s <= gemm_cost(op, a).time_s


def test_sm80_grouped_gemm_uses_its_one_tile_on_mma_sync(rates: GPURates) -> None:
    cost = grouped_gemm_cost([256, 0, 384], 512, 1024, Dtype.fp16, InstructionPath.mma_sync, rates)
    assert cost.blocks == (2 + 3) * 4  # 128 x 128 tiles; the empty group launches none
    assert cost.l2_bytes == 20 * (1024 // 32) * (128 + 128) * 32 * 2


# -- shipped profiles: the counterfactuals a fitted tile rate got wrong ---------------------------


def _shipped_rates(topology: str) -> GPURates:
    topo = load_topology(ROOT / "topologies" / f"{topology}.json")
    profile = load_profile(ROOT / "topologies" / "profiles" / f"{topo.default_profile}.json")
    return gpu_rates(topo.gpus()[0].model, profile)


def _flashmoe_tile_s(rates: GPURates, dtype: Dtype) -> float:
    blocks = 2 * rates.sm_count
    share = MainloopShare(ctas_per_sm=2, streaming_ctas=blocks - 1)
    return tile_gemm_time_s(rates, InstructionPath.mma_sync, dtype, 128, 64, 2048, 128, share)


def test_flashmoe_tile_fp16_against_tf32_is_the_physical_ratio() -> None:
    # L2-bound: a 16-bit K step moves the same 6 KiB for twice the FLOPs
    h100 = _shipped_rates("hgx_h100_8gpu")
    ratio = _flashmoe_tile_s(h100, Dtype.tf32) / _flashmoe_tile_s(h100, Dtype.fp16)
    assert 1.5 <= ratio <= 2.0 + 1e-9


def test_flashmoe_grid_computes_faster_on_h100_than_on_a100() -> None:
    # the whole grid's GEMM throughput: processors x tile FLOPs / tile time
    def grid_FLOPps(rates: GPURates) -> float:
        processors = 2 * rates.sm_count - 1
        return processors * 2 * 128 * 64 * 2048 / _flashmoe_tile_s(rates, Dtype.tf32)

    assert grid_FLOPps(_shipped_rates("hgx_h100_8gpu")) > grid_FLOPps(
        _shipped_rates("a100_sxm4_8gpu")
    )
