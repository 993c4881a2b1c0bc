"""speculative_decoding with encoder-decoder models: LLMCad's mT5-small / mT5-Large pair
(llmcad.md section 8) on an H100 PCIe in both fidelities, the memory plan of a decoder pass
(decoder weights, self- and cross-attention caches) and the spec's limits for T5."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gpusim import simulate
from gpusim.hardware.platform import Platform
from gpusim.result import Result
from gpusim.spec.loading import load_profile, load_scenario, load_topology, load_transformer
from gpusim.spec.refs import data_root
from gpusim.spec.speculative import SpeculativeDecodingWorkload
from gpusim.workloads.speculative.costs import PassCosts, kv_bytes, memory_plan

ROOT = data_root()
TOPO = load_topology(ROOT / "topologies" / "h100_pcie_1gpu.json")
PROFILE = load_profile(ROOT / "topologies" / "profiles" / "h100_pcie.json")
TARGET = load_transformer("mt5-large")
DRAFT = load_transformer("mt5-small")
BASE: dict[str, Any] = {
    "kind": "speculative_decoding",
    "strategy": "llmcad",
    "target": "mt5-large",
    "draft": "mt5-small",
    "dtype": "fp16",
    "prompt_tokens": 48,
    "generated_tokens": 32,
}


def run(tmp_path: Path, fidelity: str, **kw: Any) -> Result:
    doc = {
        "name": "mt5_pair",
        "topology": "h100_pcie_1gpu",
        "workload": BASE | kw,
        "options": {"seed": 0, "fidelity": fidelity},
    }
    path = tmp_path / f"{fidelity}.json"
    path.write_text(json.dumps(doc))
    return simulate(load_scenario(path))


def workload(**kw: Any) -> SpeculativeDecodingWorkload:
    models = {"target": TARGET, "draft": DRAFT}
    return SpeculativeDecodingWorkload.model_validate(BASE | models | kw)


@pytest.mark.parametrize("strategy", ["std", "sp", "llmcad"])
def test_the_mt5_pair_resident_agrees_in_both_fidelities(tmp_path: Path, strategy: str) -> None:
    """Every weight resident (an H100 holds both models): no stream, nothing shared, so the DES
    and the closed form give the same generation."""
    des = run(tmp_path, "des", strategy=strategy)
    closed = run(tmp_path, "analytic", strategy=strategy)
    assert des.metrics["target_resident_fraction"] == 1.0
    assert des.metrics["weight_io_s"] == 0.0
    assert des.metrics["generation_time_s"] > 0
    assert des.metrics["generation_time_s"] == pytest.approx(
        closed.metrics["generation_time_s"], rel=1e-9
    )
    assert des.metrics["verifications"] == closed.metrics["verifications"]


def test_the_mt5_pair_streams_under_a_budget_in_both_fidelities(tmp_path: Path) -> None:
    des = run(tmp_path, "des", memory_budget_GB=1.5)
    closed = run(tmp_path, "analytic", memory_budget_GB=1.5)
    for out in (des, closed):
        assert 0 < out.metrics["target_resident_fraction"] < 1
        assert out.metrics["weight_io_s"] > 0
    # the DES adds the stream's HBM sharing with provisional drafting: never faster
    assert des.metrics["generation_time_s"] >= closed.metrics["generation_time_s"] * (1 - 1e-9)


def test_the_memory_plan_holds_the_decoder_and_both_caches() -> None:
    """The target's bytes are the decoder pass's (no encoder); the caches hold the decoder's
    tokens (start token, generated, a tree) and the encoder output's cross K/V per layer."""
    wl = workload()
    rates = Platform.of(TOPO, PROFILE).gpu_rates(TOPO.gpus()[0].id)
    plan = memory_plan(wl, rates)
    assert plan.target_B == TARGET.pass_parameters() * 2
    assert plan.draft_B == DRAFT.pass_parameters() * 2
    decoder = 1 + wl.generated_tokens + wl.tree_size
    expected = sum(kv_bytes(m, wl.dtype, decoder, wl.prompt_tokens) for m in (TARGET, DRAFT))
    assert plan.kv_B == expected
    cross = 2 * TARGET.layers * TARGET.heads * TARGET.head_size * 2 * wl.prompt_tokens
    assert kv_bytes(TARGET, wl.dtype, decoder, wl.prompt_tokens) == pytest.approx(
        kv_bytes(TARGET, wl.dtype, decoder) + cross
    )


def test_a_longer_source_never_makes_a_pass_cheaper() -> None:
    rates = Platform.of(TOPO, PROFILE).gpu_rates(TOPO.gpus()[0].id)
    times = [
        PassCosts(TARGET, rates, workload().dtype, 17, encoder).of(4).time_s
        for encoder in (1, 32, 256, 1024)
    ]
    assert times == sorted(times)


def test_the_spec_places_the_prompt_and_checks_t5_lengths() -> None:
    wl = workload()
    assert wl.prompt_positions(TARGET) == (1, 48)
    assert wl.prompt_positions(load_transformer("gpt2")) == (48, 0)
    workload(prompt_tokens=1024, generated_tokens=900)  # each side within 1024
    with pytest.raises(ValidationError, match="the source its encoder reads"):
        workload(prompt_tokens=1025)
    with pytest.raises(ValidationError, match="1 \\(decoder start\\)"):
        workload(generated_tokens=1010)
    with pytest.raises(ValidationError, match="is an encoder: it cannot generate"):
        workload(target=load_transformer("bert-base"))
