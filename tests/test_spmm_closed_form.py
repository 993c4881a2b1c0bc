"""Flash-LLM's SpMM: the Tiled-CSL byte count, the LSCD pipeline's closed forms and bounds, the
split-K reduction as its own kernel, and the baselines' mechanisms."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from functools import cache

import numpy as np
import pytest

from gpusim import simulate
from gpusim.errors import SimulationError
from gpusim.hardware.platform import Platform
from gpusim.hardware.rates import GPURates
from gpusim.kernels import kernel_costs
from gpusim.kernels.mainloop import SmRates, sm_rates
from gpusim.kernels.sparse_baselines import (
    CUSPARSE,
    SPUTNIK,
    csr_cost,
    two_four_remainder_fraction,
)
from gpusim.kernels.spmm import (
    FLASH_LLM_CONFIGS,
    flash_llm_config,
    lscd_block_time_s,
    lscd_costs,
    lscd_plan,
    lscd_step_terms_s,
)
from gpusim.kernels.tiled_csl import TiledCsl, encode_counts
from gpusim.spec.base import Dtype
from gpusim.spec.loading import load_profile, load_scenario, load_topology
from gpusim.spec.profile import InstructionPath
from gpusim.spec.refs import SHIPPED_DIRS, data_root
from gpusim.spec.workload import SpmmOp

ROOT = data_root()


@cache
def _rates(topology: str = "a100_sxm4_8gpu", profile: str = "a100") -> GPURates:
    topo = load_topology(ROOT / SHIPPED_DIRS["topology"] / f"{topology}.json")
    prof = load_profile(ROOT / SHIPPED_DIRS["topology"] / "profiles" / f"{profile}.json")
    return Platform.of(topo, prof).gpu_rates(topo.gpus()[0].id)


def _total_s(op: SpmmOp, rates: GPURates | None = None) -> float:
    return sum(c.time_s for c in kernel_costs(op, rates or _rates()))


def test_storage_bytes_pad_every_tile_to_four_and_add_the_offsets() -> None:
    counts = np.array([[1, 4, 5], [0, 8191, 2]], dtype=np.int64)
    csl = TiledCsl(256, 192, counts)
    # padded: 4, 4, 8, 0, 8192, 4 -> 8212 words of 4 B; offsets: 6 tiles + 2 entries of 4 B
    assert csl.nnz == 1 + 4 + 5 + 0 + 8191 + 2
    assert csl.nnz_padded == 8212
    assert csl.storage_bytes == 4 * 8212 + 4 * (6 + 2)


def test_dense_matrix_stores_every_weight_in_four_bytes() -> None:
    csl = encode_counts(1024, 512, 0.0)
    assert csl.nnz == csl.nnz_padded == 1024 * 512
    assert csl.storage_bytes == 4 * 1024 * 512 + 4 * (8 * 8 + 2)


def test_drawn_counts_are_seeded_and_near_their_expectation() -> None:
    a = encode_counts(4096, 4096, 0.8, seed=3)
    b = encode_counts(4096, 4096, 0.8, seed=3)
    c = encode_counts(4096, 4096, 0.8, seed=4)
    assert np.array_equal(a.counts, b.counts)
    assert not np.array_equal(a.counts, c.counts)
    expected = 0.2 * 4096 * 4096
    assert a.nnz == pytest.approx(expected, rel=5 * math.sqrt(0.8 / expected))
    # padding: at most 3 words per tile, 1.5 on average for spread counts
    assert 0 < a.nnz_padded - a.nnz <= 3 * a.tiles
    skewed = encode_counts(4096, 4096, 0.8, "skewed_rows", row_density_cv=0.8, seed=3)
    strips_uniform = a.counts.sum(axis=1).std() / a.counts.sum(axis=1).mean()
    strips_skewed = skewed.counts.sum(axis=1).std() / skewed.counts.sum(axis=1).mean()
    assert strips_skewed > 3 * strips_uniform


def test_shapes_that_are_not_whole_tiles_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 128"):
        SpmmOp(m=100, k=64, n=8, sparsity=0.5)
    SpmmOp(m=100, k=64, n=8, sparsity=0.5, impl="sputnik")  # CSR needs no tiles
    with pytest.raises(SimulationError, match="multiple of 256"):
        lscd_costs(SpmmOp(m=384, k=64, n=8, sparsity=0.5), _rates())


def test_configuration_follows_the_reference_table() -> None:
    assert [flash_llm_config(n).name for n in (1, 8, 9, 16, 32, 33, 64, 65, 512)] == [
        "4x1x1_N8",
        "4x1x1_N8",
        "4x1x1",
        "4x1x1",
        "4x1x2",
        "2x2x2",
        "2x2x2",
        "2x2x4",
        "2x2x4",
    ]
    for config in FLASH_LLM_CONFIGS:
        stage_B = 2 * (config.tile_m * 64 + config.mma_n * 64) * 2  # buffers as wide as the MMA
        staging_B = (config.tile_m + 4) * config.tile_n * 4
        assert config.smem_bytes == max(stage_B, staging_B)  # flash_llm.md section 3


SM = SmRates(
    mma_FLOPps=2e12,
    l2_near_Bps=5e12,
    l2_whole_Bps=4e12,
    l2_partition_B=20e6,
    l2_hit_latency_s=200e-9,
    shared_mem_Bps=200e9,
    hbm_load_latency_s=400e-9,
    hbm_Bps=2e12,
)


def test_step_terms_are_the_hand_computed_closed_forms() -> None:
    config = flash_llm_config(8)  # 256 x 8 tile, MMA 16 wide, 4 x 1 warps
    nnz = 3280.0  # words of the two 128 x 64 tiles of one step
    load, smem, mma, extract = lscd_step_terms_s(
        SM, config, nnz, ctas_per_sm=2, streaming_ctas=200, extract_s_per_nonzero=10e-9
    )
    sparse_B = 4 * nnz + 4 * 2
    assert load == pytest.approx(max(sparse_B * 200 / 2e12, 400e-9), rel=1e-12)
    smem_B = 256 * 64 * 2 + 4 * nnz + 8 * 64 * 2 + 1 * 256 * 64 * 2 + 4 * 16 * 64 * 2
    assert smem == pytest.approx(smem_B * 2 / 200e9, rel=1e-12)
    assert mma == pytest.approx(2 * 256 * 16 * 64 * 2 / 2e12, rel=1e-12)
    assert extract == pytest.approx(2 * nnz / 128 * 10e-9, rel=1e-12)
    block = lscd_block_time_s(
        SM, config, 48 * nnz, 48, ctas_per_sm=2, streaming_ctas=200, extract_s_per_nonzero=10e-9
    )
    store = 256 * 8 * 2 * 200 / 2e12
    assert block == pytest.approx(400e-9 + 48 * (max(load, smem, mma) + extract) + store)


def test_few_nonzeros_per_step_leave_one_load_latency_per_step() -> None:
    config = flash_llm_config(8)
    load, *_ = lscd_step_terms_s(
        SM, config, 4.0, ctas_per_sm=1, streaming_ctas=1, extract_s_per_nonzero=0.0
    )
    assert load == SM.hbm_load_latency_s


def test_plan_waves_split_and_occupancy_on_a100() -> None:
    rates = _rates()
    op = SpmmOp(m=36864, k=9216, n=8, sparsity=0.8)
    plan = lscd_plan(op, sm_rates(rates, InstructionPath.mma_sync, Dtype.fp16), rates.spec, 0.0)
    assert plan.split_k == 3  # benchmark.sh's Split_K for M = 36864
    assert plan.blocks == 36864 // 256 * 3  # one column block: N = 8
    assert plan.blocks_per_sm == 2  # 69,632 B + 1 KiB reserved, twice in 164 KiB
    assert plan.steps == 9216 // 64 // 3


def test_split_k_reduction_is_a_second_kernel_of_the_partials() -> None:
    op = SpmmOp(m=36864, k=9216, n=8, sparsity=0.8)
    main, reduction = kernel_costs(op, _rates())
    assert main.name.startswith("spmm_lscd") and reduction.name == "splitk_reduction_3"
    assert reduction.hbm_bytes == 3 * 36864 * 8 * 2 + 36864 * 8 * 2
    assert reduction.floor_s == main.floor_s > 0  # its own kernel, its own floor


def test_unsplit_spmm_is_one_kernel() -> None:
    op = SpmmOp(m=4096, k=1024, n=64, sparsity=0.9)  # M not in the table: best split
    costs = kernel_costs(op, _rates())
    plan = lscd_plan(
        op, sm_rates(_rates(), InstructionPath.mma_sync, Dtype.fp16), _rates().spec, 0.0
    )
    assert len(costs) == (1 if plan.split_k == 1 else 2)


def test_dense_weights_move_at_least_the_dense_bytes() -> None:
    op = SpmmOp(m=7168, k=7168, n=16, sparsity=0.0)
    main = kernel_costs(op, _rates())[0]
    assert main.hbm_bytes >= 2 * (7168 * 7168 + 7168 * 16 + 7168 * 16)
    assert main.time_s >= main.hbm_bytes / _rates().hbm_achievable_Bps


@pytest.mark.parametrize("n", [8, 16, 32, 64])
def test_speedup_over_streaming_the_dense_weights_is_bounded_by_the_byte_ratio(n: int) -> None:
    rates = _rates()
    for sparsity in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99):
        op = SpmmOp(m=28672, k=7168, n=n, sparsity=sparsity)
        main = kernel_costs(op, rates)[0]
        dense_stream_s = 2 * (28672 * 7168 + 7168 * n + 28672 * n) / rates.hbm_achievable_Bps
        assert dense_stream_s / _total_s(op) <= 2 * 28672 * 7168 / main.hbm_bytes


@pytest.mark.parametrize("impl", ["flash_llm", "sputnik", "cusparse", "sparta"])
def test_time_never_grows_with_sparsity(impl: str) -> None:
    times = [
        _total_s(SpmmOp(m=9216, k=36864, n=16, sparsity=s, impl=impl))
        for s in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
    ]
    assert all(b <= a * (1 + 1e-9) for a, b in itertools.pairwise(times)), times


def test_more_hbm_bandwidth_is_never_slower() -> None:
    rates = _rates()
    for sparsity in (0.5, 0.8, 0.99):
        op = SpmmOp(m=36864, k=9216, n=8, sparsity=sparsity)
        times = [
            _total_s(op, replace(rates, hbm_achievable_Bps=rates.hbm_achievable_Bps * f))
            for f in (0.5, 0.8, 1.0, 1.5, 3.0)
        ]
        assert all(b <= a for a, b in itertools.pairwise(times)), times


def test_same_seed_same_time_other_seed_close() -> None:
    a = _total_s(SpmmOp(m=9216, k=9216, n=8, sparsity=0.9, seed=1))
    b = _total_s(SpmmOp(m=9216, k=9216, n=8, sparsity=0.9, seed=1))
    c = _total_s(SpmmOp(m=9216, k=9216, n=8, sparsity=0.9, seed=2))
    assert a == b
    assert c == pytest.approx(a, rel=0.02)


def test_skewed_rows_are_slower_than_uniform_at_the_same_sparsity() -> None:
    uniform = SpmmOp(m=9216, k=9216, n=8, sparsity=0.8)
    skewed = uniform.model_copy(update={"pattern": "skewed_rows", "row_density_cv": 1.0})
    assert _total_s(skewed) > _total_s(uniform)


def test_profile_without_sparse_costs_is_a_clear_error() -> None:
    rates = _rates()
    bare = Platform.of(
        load_topology(ROOT / SHIPPED_DIRS["topology"] / "a100_sxm4_8gpu.json"),
        rates.profile.model_copy(update={"sparse": None}),
    ).gpu_rates("gpu0")
    with pytest.raises(SimulationError, match=r"no sparse\.extract_cycles_per_nonzero"):
        lscd_costs(SpmmOp(m=256, k=64, n=8, sparsity=0.5), bare)


def test_two_four_remainder_is_the_binomial_tail() -> None:
    assert two_four_remainder_fraction(0.0) == 0.0
    assert two_four_remainder_fraction(1.0) == pytest.approx(0.5)  # 2 of every 4 left over
    d = 0.3
    # E[max(0, X - 2)] for X ~ Binomial(4, d): one extra with 3, two with 4
    expected = (4 * d**3 * (1 - d) * 1 + d**4 * 2) / 4
    assert two_four_remainder_fraction(d) == pytest.approx(expected)


def test_csr_gathers_whole_sectors_and_column_major_gathers_one_per_column() -> None:
    rates = _rates()
    op = SpmmOp(m=8192, k=4096, n=8, sparsity=0.9, impl="sputnik")
    nnz = 0.1 * 8192 * 4096
    sputnik = csr_cost(SPUTNIK, op, rates, nnz)
    cusparse = csr_cost(CUSPARSE, op, rates, nnz)
    # HBM: Sputnik 2 B value + 2 B index per stored (row-padded) nonzero, row offsets and the
    # swizzle; cuSPARSE 2 + 4 B, row offsets
    stored = nnz + 8192 * 3 / 2
    x_out = 4096 * 8 * 2 + 8192 * 8 * 2
    assert sputnik.hbm_bytes == pytest.approx(stored * 4 + 4 * 8193 + 4 * 8192 + x_out)
    assert cusparse.hbm_bytes == pytest.approx(nnz * 6 + 4 * 8193 + x_out)
    # activations fit L1 here (4096 x 8 x 2 B = 64 KiB): both are bound by L1 sectors
    l1_Bps = rates.sm_count * rates.shared_mem_Bps_per_sm
    assert sputnik.compute_time_s == pytest.approx(
        max(stored * 32 / l1_Bps, sputnik.compute_time_s)
    )
    assert cusparse.compute_time_s >= nnz * 8 * 32 / l1_Bps
    assert cusparse.time_s > sputnik.time_s


def test_baselines_against_flash_llm_at_the_calibration_shape() -> None:
    """Orderings the mechanisms imply at 80 % and N = 8 on A100 (the numbers are predictions,
    docs/sparse.md): cuSPARSE's strided gathers make it the slowest; the dense cuBLAS GEMM
    moves 2.5x Flash-LLM's weight bytes."""
    base = SpmmOp(m=36864, k=9216, n=8, sparsity=0.8)
    times = {
        impl: _total_s(base.model_copy(update={"impl": impl}))
        for impl in ("flash_llm", "cublas", "sputnik", "cusparse", "sparta")
    }
    assert times["cusparse"] == max(times.values())
    assert times["flash_llm"] < times["cublas"]
    assert times["sparta"] < times["cublas"]


@pytest.mark.parametrize("launch", ["eager", "graph"])
def test_spmm_chain_launches_both_kernels_and_des_equals_analytic(launch: str) -> None:
    """The FL-2 scenario as a chain of three SpMMs: six launches (LSCD kernel and reduction
    each time), the DES reproducing the analytic recurrence where nothing contends."""
    path = ROOT / "validation" / "scenarios" / "fl2_spmm_a100.json"
    overrides = {"workload.count": 3, "workload.launch": launch}
    runs = {
        fidelity: simulate(load_scenario(path, {**overrides, "options.fidelity": fidelity}))
        for fidelity in ("des", "analytic")
    }
    des, ana = runs["des"], runs["analytic"]
    assert des.metrics["kernel_launches"] == ana.metrics["kernel_launches"] == 6
    main, reduction = kernel_costs(SpmmOp(m=36864, k=9216, n=8, sparsity=0.8), _rates())
    assert des.metrics["kernel_time_s"] == pytest.approx(main.time_s + reduction.time_s)
    assert des.makespan_s == pytest.approx(ana.makespan_s, rel=1e-9)
    assert des.metrics["tklqt_s"] == pytest.approx(ana.metrics["tklqt_s"], rel=1e-9)
