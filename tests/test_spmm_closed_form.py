"""The SpMM closed form."""

from __future__ import annotations

import pytest

from gpusim.kernels.spmm import SpmmShape, dense_load_Bps, spmm_cost

SHAPE = SpmmShape(m_rows=4096, k_depth=4096, n_cols=16, nnz=4096 * 4096 // 5)


def _cost(efficiency: float, extract_s: float, dense_s: float) -> float:
    return spmm_cost(
        SHAPE,
        peak_FLOPps=1e15,
        tensor_efficiency=efficiency,
        load_Bps=dense_load_Bps(SHAPE, dense_s),
        extract_s_per_nonzero=extract_s,
        sms=100,
        hbm_nameplate_Bps=3e12,
    ).time_s


def test_spmm_load_bound_is_the_dense_time_scaled_by_bytes() -> None:
    # 20 % dense: 4 B per nonzero against 2 B per dense weight, so 40 % of the weight bytes
    dense_s = 50e-6
    weights_B, act_B = 2 * 4096 * 4096, 2 * (4096 * 16 + 4096 * 16)
    sparse_B = 4 * SHAPE.nnz + act_B
    expected = dense_s * sparse_B / (weights_B + act_B)
    assert _cost(0.9, 0.0, dense_s) == pytest.approx(expected, rel=1e-12)
    extract = SHAPE.nnz * 1e-9 / 100
    assert _cost(0.9, 1e-9, dense_s) == pytest.approx(expected + extract, rel=1e-12)


def test_spmm_compute_bound_runs_the_zeros_as_dense_mmas() -> None:
    slow_tensor = _cost(1e-3, 0.0, 1e-9)  # loads take no time: the tensor work shows
    assert slow_tensor == pytest.approx(2 * 4096 * 4096 * 16 / (1e15 * 1e-3), rel=1e-12)


def test_spmm_reports_useful_work_and_a_roofline_below_its_time() -> None:
    cost = spmm_cost(
        SHAPE,
        peak_FLOPps=1e15,
        tensor_efficiency=0.5,
        load_Bps=2e12,
        extract_s_per_nonzero=1e-10,
        sms=100,
        hbm_nameplate_Bps=3e12,
    )
    assert cost.flops == 2 * SHAPE.nnz * 16
    assert cost.hbm_bytes == SHAPE.sparse_bytes < SHAPE.dense_bytes
    assert 0 < cost.lower_bound_s <= cost.time_s
