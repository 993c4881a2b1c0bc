"""A report says where the model is known to be off for the systems it compares: the ledger's
cases that run the same workload kind and strategy on the same GPU model, off-tolerance ones
first, above the figures."""

from __future__ import annotations

from pathlib import Path

from gpusim.report.caveats import (
    Caveat,
    Footprint,
    covering_cases,
    report_caveats,
)
from gpusim.report.html import render_svg_page
from gpusim.validate import load_ledger

ROOT = Path(__file__).resolve().parents[1]
LEDGER = ROOT / "validation" / "calibration_points.json"
H100 = "NVIDIA H100 SXM5 80GB"
A100 = "NVIDIA A100 SXM4 80GB"


def test_cases_cover_systems_of_the_same_workload_strategy_and_gpu() -> None:
    systems = {
        "Megatron-H100": Footprint("moe_layer", "megatron", frozenset({H100})),
        "Megatron-A100": Footprint("moe_layer", "megatron", frozenset({A100})),
        "FlashMoE-H100": Footprint("moe_layer", "flashmoe", frozenset({H100})),
        "GEMM-H100": Footprint("gemm_alltoall", "", frozenset({H100})),
    }
    found = covering_cases(load_ledger(LEDGER).cases, LEDGER.parent, systems)
    assert {case.id: names for case, names in found} == {
        "FM-1": ["FlashMoE-H100"],
        "FM-2": ["Megatron-H100"],
    }


def test_the_moe_sweep_report_warns_about_fm2_first() -> None:
    manifest = {"sweep_file": str(ROOT / "workloads" / "moe_weak_scaling_sweep.json")}
    caveats = report_caveats(manifest, LEDGER)
    assert caveats is not None
    first = caveats[0]
    assert first.case_id == "FM-2" and first.standing == "off"
    assert set(first.systems) == {"Megatron-CUTLASS", "Megatron-TE", "Megatron-A2A-P2P"}
    assert first.error_pct is not None and abs(first.error_pct) > first.tolerance_pct
    assert "may be the model's error" in first.sentence
    assert {c.case_id: c.standing for c in caveats}["FM-1"] == "within"  # a prediction now


def test_no_sweep_file_means_not_checked() -> None:
    assert report_caveats({}, LEDGER) is None
    assert report_caveats({"sweep_file": "/nonexistent/sweep.json"}, LEDGER) is None


def test_the_page_states_the_caveats_above_its_figures() -> None:
    caveat = Caveat(
        case_id="FM-2",
        source="a paper",
        systems=("Megatron",),
        standing="off",
        metric="metrics.forward_latency_s",
        unit="ms",
        expected=4.2,
        predicted=1.07,
        error_pct=-74.5,
        tolerance_pct=25.0,
    )
    rows = [{"point": 0, "system": "Megatron", "seed": 0, "status": "ok", "makespan_s": 1.0}]
    page = render_svg_page({"name": "s"}, rows, [("fig", "<svg></svg>")], caveats=[caveat])
    warning = page.index("FM-2 (Megatron): the model predicts 1.07 ms")
    assert page.index("known to be off") < warning < page.index("<svg")
    assert 'class="caveat-off"' in page
    unchecked = render_svg_page({"name": "s"}, rows, [], caveats=None)
    assert "Not checked against the validation ledger" in unchecked


def test_the_pdf_summary_page_states_the_caveats() -> None:
    from gpusim.report import _summary_page

    caveat = Caveat("FM-2", "a paper", ("Megatron",), "off", "m_s", "ms", 4.2, 1.07, -74.5, 25.0)
    text = " ".join(t.get_text() for t in _summary_page({"name": "s"}, [], [caveat]).texts)
    assert "where the model is known to be off" in text
    assert "FM-2 (Megatron): the model predicts 1.07 ms" in text
    unchecked = " ".join(t.get_text() for t in _summary_page({"name": "s"}, [], None).texts)
    assert "not checked against the validation ledger" in unchecked
