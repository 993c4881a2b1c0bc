"""llm_inference against closed forms: TKLQT on its plateau and past the knee (skip_tklqt.md
section 8), the transition moving with the host's speed, graphs and fusion never adding
latency, the KV cache's growth, a model that does not fit, the trace's launch pairing, and the
spec's refusals."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import make_profile, make_scenario, make_star_topology
from pydantic import ValidationError
from typer.testing import CliRunner

from gpusim import simulate
from gpusim.cli import app
from gpusim.engine.sim import Simulation
from gpusim.errors import SimulationError, SpecError
from gpusim.execution.host_costs import HostCosts, RuntimeCall
from gpusim.execution.program import HostStep, KernelStep, Step, SyncStep, host_cost_s
from gpusim.export.perfetto import chrome_trace
from gpusim.hardware.node import Node
from gpusim.hardware.platform import Platform
from gpusim.limits import Limits, check_limits, estimate
from gpusim.result import Outcome
from gpusim.spec.base import Dtype
from gpusim.spec.llm import LlmInferenceWorkload
from gpusim.spec.loading import load_profile, load_topology, load_transformer, load_workload
from gpusim.spec.model_zoo import TransformerModel
from gpusim.spec.profile import CalibrationProfile, Measured
from gpusim.spec.refs import data_root
from gpusim.spec.scenario import Fidelity
from gpusim.spec.topology import Topology
from gpusim.workloads import llm
from gpusim.workloads.llm.forward import ForwardShape, forward_ops, one_layer_ops
from gpusim.workloads.llm.fusion import fuse, linked_pairs
from gpusim.workloads.llm.metrics import transition_batch
from gpusim.workloads.llm.ops import Host, Kernel, Op, OpList
from gpusim.workloads.llm.program import Programs

ROOT = data_root()
TOPO = make_star_topology(2)
PROFILE = make_profile()
COSTS = HostCosts.from_profile(PROFILE)
D = COSTS.launch.doorbell_s


def tiny(**kw: object) -> TransformerModel:
    """A Llama-shaped decoder whose kernels all take less than one host issue interval."""
    base: dict[str, object] = {
        "name": "tiny",
        "source": "test fixture",
        "architecture": "decoder",
        "layers": 2,
        "hidden": 64,
        "heads": 2,
        "kv_heads": 1,
        "ffn": 128,
        "vocab": 256,
        "max_positions": 4096,
        "activation": "silu",
        "gated_mlp": True,
        "norm": "rmsnorm",
        "norm_position": "pre",
        "positional": "rope",
        "linear_bias": False,
        "tied_embeddings": True,
    }
    return TransformerModel.model_validate(base | kw)


def workload(model: TransformerModel, **kw: object) -> LlmInferenceWorkload:
    base: dict[str, object] = {"model": model, "gpus": ["gpu0"], "batch": 1, "prompt_tokens": 4}
    return LlmInferenceWorkload.model_validate(base | kw)


def both(
    wl: LlmInferenceWorkload, topology: Topology = TOPO, profile: CalibrationProfile = PROFILE
) -> tuple[Outcome, Outcome]:
    des = llm.des(Node(topology, profile, Simulation()), wl, seed=0)
    return des, llm.analytic(topology, profile, wl, seed=0)


def steps_of(wl: LlmInferenceWorkload, profile: CalibrationProfile = PROFILE) -> list[Step]:
    rates = Platform.of(TOPO, profile).gpu_rates("gpu0")
    return list(Programs(wl, rates, 1, 16).program(0))


# -- the kernels an eager HF forward launches ----------------------------------------------------


def _kernel_count(wl: LlmInferenceWorkload) -> int:
    return sum(isinstance(s, KernelStep) for s in steps_of(wl))


def test_llama_prefill_launches_the_hf_eager_kernels() -> None:
    # per layer: RMSNorm 8, q/k/v 3, rotary on Q and K 2 x 5, SDPA 1, .contiguous() 1, o_proj 1,
    # residual add 1, RMSNorm 8, gate/up 2, SiLU 1, mul 1, down 1, residual add 1 = 39; per
    # pass: arange 1, embedding 1, rotary setup 9, final RMSNorm 8, LM head 1 = 20
    wl = LlmInferenceWorkload(model=load_transformer("llama-3.2-1b"), batch=2, prompt_tokens=16)
    assert _kernel_count(wl) == 16 * 39 + 20 == 644


def test_gpt2_prefill_and_decode_kernels() -> None:
    # per layer: LayerNorm, c_attn, SDPA, .contiguous(), c_proj, add, LayerNorm, c_fc, GELU as
    # written (8), c_proj, add = 18; per pass: arange, wte, wpe, add, ln_f, LM head = 6
    gpt2 = load_transformer("gpt2")
    prefill = LlmInferenceWorkload(model=gpt2, batch=2, prompt_tokens=16)
    assert _kernel_count(prefill) == 12 * 18 + 6 == 222
    # a decode step also concatenates K and V onto the cache in every layer (DynamicCache), and
    # generate's greedy epilogue launches 17 kernels (cast, argmax, 4 of arithmetic, 2 cats,
    # fill, add, 5 of stopping criteria, max, eq) before its host read
    decode = LlmInferenceWorkload(
        model=gpt2, batch=2, prompt_tokens=16, generated_tokens=1, phase="decode"
    )
    steps = steps_of(decode)
    assert _kernel_count(decode) == 12 * (18 + 2) + 6 + 17
    assert sum(isinstance(s, SyncStep) for s in steps) == 1


# -- TKLQT on the plateau and past the knee ------------------------------------------------------


def test_cpu_bound_tklqt_is_kernels_times_launch_call_plus_doorbell() -> None:
    wl = workload(tiny())
    steps = steps_of(wl)
    calls = Counter(s.call for s in steps if isinstance(s, KernelStep))
    expected = sum(n * (COSTS.runtime_call_s(call) + D) for call, n in calls.items())
    longest = max(s.cost.time_s for s in steps if isinstance(s, KernelStep))
    assert longest < COSTS.framework_op_s(KernelStep.op_kind) + COSTS.runtime_call_s(
        RuntimeCall.launch_kernel
    )  # every kernel ends before the next launch reaches the GPU: no queue can form
    for out in both(wl):
        assert out.metrics["kernels"] == sum(calls.values())
        assert out.metrics["tklqt_s"] == pytest.approx(expected, rel=1e-12)
        assert out.metrics["queueing_s"] == pytest.approx(0.0, abs=1e-15)
        assert out.metrics["cpu_bound"] == 1.0
        assert len(out.series["launch_queue_s"]) == sum(calls.values())


def _recurrence_tklqt(steps: Sequence[Step]) -> float:
    """skip_tklqt.md section 8 on one stream: h_j the host clock at the runtime call,
    s_j = max(h_j + c_j + D, e_(j-1)); t_lj = s_j - h_j (the queue never fills here)."""
    host, end, total = 0.0, 0.0, 0.0
    for step in steps:
        if isinstance(step, KernelStep):
            call_begin = host + COSTS.framework_op_s(step.op_kind, step.records_graph)
            host += host_cost_s(step, COSTS, 0.0)
            start = max(host + D, end)
            end = start + step.cost.time_s
            total += start - call_begin
        elif isinstance(step, HostStep):
            host += host_cost_s(step, COSTS, 0.0)
        else:
            assert isinstance(step, SyncStep) and step.kind == "device"
    return total


@pytest.mark.parametrize("batch", [64, 256])
def test_gpu_bound_tklqt_follows_the_launch_recurrence(batch: int) -> None:
    wl = workload(tiny(hidden=1024, ffn=4096, heads=8, kv_heads=2), batch=batch, prompt_tokens=64)
    steps = steps_of(wl)
    expected = _recurrence_tklqt(steps)
    for out in both(wl):
        assert out.metrics["tklqt_s"] == pytest.approx(expected, rel=1e-12)
        # past the knee: kernels wait behind earlier ones, far beyond the launch path
        assert out.metrics["queueing_s"] > 10 * out.metrics["tklqt_no_queue_s"]
        assert out.metrics["cpu_bound"] == 0.0


def test_tklqt_is_flat_then_rises_with_the_batch() -> None:
    model = load_transformer("gpt2")
    topo = load_topology(ROOT / "topologies/h100_pcie_1gpu.json")
    profile = load_profile(ROOT / "topologies/profiles/h100_pcie.json")
    tklqt = {}
    for b in (1, 2, 256, 512):
        wl = LlmInferenceWorkload(model=model, batch=b, prompt_tokens=32)
        tklqt[b] = llm.analytic(topo, profile, wl, seed=0).metrics["tklqt_s"]
    assert tklqt[2] == pytest.approx(tklqt[1], rel=0.05)  # the plateau
    assert tklqt[512] > 1.5 * tklqt[256] > 10 * tklqt[1]  # the queue grows with the batch


# -- one layer built, repeated ---------------------------------------------------------------


def _issued(op: Op) -> object:
    """What of an op reaches a program step: all but the tensor ids."""
    if isinstance(op, Kernel):
        return (op.kind, op.cost, op.op_kind, op.call, op.memory_bound)
    return op


@pytest.mark.parametrize("name", ["llama-3.2-1b", "gpt2", "bert-base", "opt-30b"])
@pytest.mark.parametrize("past", [0, 17])
def test_one_layer_repeated_is_the_whole_forward(name: str, past: int) -> None:
    model = load_transformer(name)
    rates = Platform.of(TOPO, PROFILE).gpu_rates("gpu0")
    for static in (False, True):
        shape = ForwardShape(4, 1 if past else 16, past, 1, static)
        whole = OpList(rates, Dtype.bf16, {})
        forward_ops(model, shape, whole)
        once = OpList(rates, whole.dtype, whole.cache)
        a, b = one_layer_ops(model, shape, once)
        composed = once.ops[:a] + once.ops[a:b] * model.layers + once.ops[b:]
        assert [_issued(o) for o in composed] == [_issued(o) for o in whole.ops]
        assert any(isinstance(o, Host) for o in composed)


# -- the transition and the host's speed ---------------------------------------------------------


def _slower_host(profile: CalibrationProfile, factor: float) -> CalibrationProfile:
    """Every framework, Python and runtime-call cost multiplied by ``factor``."""

    def scaled(m: Measured) -> Measured:
        return m.model_copy(update={"value": m.value * factor, "low": None, "high": None})

    launch = profile.launch.model_copy(
        update={
            name: scaled(getattr(profile.launch, name))
            for name in ("framework_op_us", "launch_api_us")
        }
    )
    host = profile.host.model_copy(
        update={
            name: scaled(getattr(profile.host, name))
            for name in ("view_op_us", "python_step_us", "cublas_call_us", "reduction_op_us")
        }
    )
    return profile.model_copy(update={"launch": launch, "host": host})


def test_a_slower_host_moves_the_transition_to_a_larger_batch() -> None:
    model = load_transformer("gpt2")
    topo = load_topology(ROOT / "topologies/h100_pcie_1gpu.json")
    fast = load_profile(ROOT / "topologies/profiles/h100_pcie.json")
    slow = _slower_host(fast, 4.0)
    batches = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    found = []
    for profile in (fast, slow):
        bound = []
        for b in batches:
            wl = LlmInferenceWorkload(model=model, batch=b, prompt_tokens=32)
            bound.append(llm.analytic(topo, profile, wl, seed=0).metrics["cpu_bound"])
        found.append(transition_batch(batches, bound))
    assert found[0] is not None and found[1] is not None
    assert found[1] > found[0]


def test_transition_batch_is_where_every_larger_batch_is_gpu_bound() -> None:
    assert transition_batch([1, 2, 4, 8], [1, 1, 0, 0]) == 4
    assert transition_batch([8, 1, 4, 2], [0, 1, 1, 0]) == 8  # unsorted; 2 was an outlier
    assert transition_batch([1, 2], [1, 1]) is None


# -- graphs and fusion ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "llama-3.2-1b", "bert-base"])
@pytest.mark.parametrize("batch", [1, 16, 128])
def test_graphs_and_fusion_never_increase_latency(name: str, batch: int) -> None:
    model = load_transformer(name)
    topo = load_topology(ROOT / "topologies/h100_pcie_1gpu.json")
    profile = load_profile(ROOT / "topologies/profiles/h100_pcie.json")
    phase: dict[str, object] = {"prompt_tokens": 16}
    if model.architecture == "decoder":
        phase |= {"phase": "both", "generated_tokens": 2}

    def latency(**kw: object) -> float:
        wl = LlmInferenceWorkload.model_validate({"model": model, "batch": batch} | phase | kw)
        return llm.analytic(topo, profile, wl, seed=0).metrics["inference_latency_s"]

    static = latency(kv_cache="static")
    assert latency(launch="graph", kv_cache="static") <= static
    assert latency(launch="fused", kv_cache="static") <= static
    assert latency(launch="fused") <= latency()


def test_fusion_merges_deterministic_chains_and_drops_intermediates() -> None:
    rates = Platform.of(TOPO, PROFILE).gpu_rates("gpu0")
    ops = OpList(rates, Dtype.bf16, {})
    # a, b twice as a chain (a -> b both ways), c elsewhere; t1 an intermediate, t2 read later
    for i in range(2):
        ops.ew("a", ((f"x{i}", 100.0),), ((f"t1_{i}", 40.0),))
        ops.views()
        ops.ew("b", ((f"t1_{i}", 40.0),), ((f"t2_{i}", 10.0),))
        ops.ew("c", ((f"t2_{i}", 10.0),), ((f"y{i}", 10.0),))
        ops.gemm("g", 16, 16, 16, f"y{i}", f"z{i}")
    pairs = linked_pairs(ops.ops)
    assert pairs == {("a", "b"), ("b", "c")}
    result = fuse(ops.ops, ops)
    assert result.chains == (("a", "b", "c"),)
    assert result.removed == 4
    merged = [op for op in result.ops if isinstance(op, Kernel) and op.kind.startswith("fused")]
    assert len(merged) == 2
    # reads x once; t1 and t2 stay on chip; y is read after the chain (by the GEMM)
    assert merged[0].cost.hbm_bytes == 100 + 10
    assert merged[0].kind == "fused[a+b+c]"


# -- the KV cache and HBM ------------------------------------------------------------------------


def test_kv_cache_grows_by_the_formula() -> None:
    # Llama-3.1-8B in bf16: 2 (K, V) x 32 layers x 8 KV heads x 128 x 2 B = 131072 B per token
    model = load_transformer("llama-3.1-8b")
    wl = LlmInferenceWorkload(
        model=model, batch=4, prompt_tokens=100, generated_tokens=28, phase="both"
    )
    assert llm.kv_cache_bytes(wl, 1) == 4 * 131072
    assert llm.kv_cache_bytes(wl, 128) == 128 * 4 * 131072
    tp2 = wl.model_copy(update={"tensor_parallel": 2, "gpus": None})
    assert llm.kv_cache_bytes(tp2, 128) == 128 * 4 * 131072 / 2
    # and every decode step's attention reads one more token's K and V per layer
    small = LlmInferenceWorkload(
        model=tiny(), gpus=["gpu0"], batch=3, prompt_tokens=8, generated_tokens=3, phase="decode"
    )
    reads = [
        s.cost.hbm_bytes
        for s in steps_of(small)
        if isinstance(s, KernelStep) and s.cost.name == "flash_attn_decode"
    ]
    per_layer_token = 2 * 1 * 32 * 2 * 3  # K and V x 1 KV head x head size 32 x 2 B x batch 3
    layers = 2
    assert len(reads) == 3 * layers
    assert reads[layers] - reads[0] == per_layer_token
    assert reads[2 * layers] - reads[layers] == per_layer_token


def test_memory_metrics_count_weights_and_kv_cache() -> None:
    model = load_transformer("llama-3.1-8b")
    wl = LlmInferenceWorkload(
        model=model, gpus=["gpu0"], batch=8, prompt_tokens=512, generated_tokens=2, phase="both"
    )
    out = llm.analytic(TOPO, PROFILE, wl, seed=0)
    assert out.metrics["weights_B"] == model.parameters() * 2
    assert out.metrics["kv_cache_B"] == 514 * 8 * 131072
    assert out.metrics["hbm_required_B"] == out.metrics["weights_B"] + out.metrics["kv_cache_B"]


def test_a_model_that_does_not_fit_is_one_line_at_run_time(tmp_path: Path) -> None:
    wl = LlmInferenceWorkload(model=load_transformer("llama-3.1-70b"), batch=1, prompt_tokens=8)
    with pytest.raises(SimulationError, match=r"does not fit: it needs 141\.\d GB") as err:
        llm.analytic(TOPO, PROFILE, wl, seed=0)
    assert "\n" not in str(err.value)
    with pytest.raises(SimulationError, match="does not fit"):
        simulate(make_scenario(wl))
    # through the CLI: one line, the run fails (the check passes: a batch sweep keeps the
    # points that fit)
    doc = {
        "name": "misfit",
        "topology": "h100_pcie_1gpu",
        "workload": {
            "kind": "llm_inference",
            "model": "llama-3.1-70b",
            "batch": 1,
            "prompt_tokens": 8,
        },
    }
    path = tmp_path / "misfit.json"
    path.write_text(json.dumps(doc))
    runner = CliRunner()
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    ran = runner.invoke(app, ["run", str(path), "-o", str(tmp_path / "out")])
    assert ran.exit_code != 0
    assert "does not fit" in ran.output


def test_a_very_long_decode_is_refused_before_it_runs() -> None:
    wl = LlmInferenceWorkload(
        model=load_transformer("llama-3.1-8b"),
        batch=1,
        prompt_tokens=8,
        generated_tokens=100_000,
        phase="decode",
    )
    scenario = make_scenario(wl)
    work = estimate(scenario)
    # 100,000 passes x (32 + 1) layers' worth of at most 60 steps, 8 events each
    assert work.events == 8 * 60 * 33 * 100_000
    with pytest.raises(SpecError, match=r"\$\.workload\.generated_tokens: too big to simulate"):
        check_limits(scenario, "s.json", Limits())
    check_limits(make_scenario(wl.model_copy(update={"generated_tokens": 16})), "s.json", Limits())


# -- the trace -----------------------------------------------------------------------------------


@pytest.mark.parametrize("launch", ["eager", "graph", "fused"])
def test_the_trace_pairs_every_kernel_with_its_launch(launch: str) -> None:
    wl = workload(
        tiny(),
        batch=2,
        generated_tokens=2,
        phase="both",
        launch=launch,
        kv_cache="static" if launch == "graph" else "dynamic",
    )
    result = simulate(make_scenario(wl, trace=True))
    assert result.trace is not None
    events = chrome_trace(result.trace, "t")["traceEvents"]
    device = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy")]
    runtime = [e for e in events if e.get("ph") == "X" and e.get("cat") == "cuda_runtime"]
    calls = Counter(e["args"]["correlation"] for e in runtime if "correlation" in e.get("args", {}))
    assert len(device) == result.metrics["kernels"] + 3  # the kernels and one copy per step
    for e in device:
        assert calls[e["args"]["correlation"]] == 1, e
    if launch == "graph":
        graph_calls = [e for e in runtime if e["name"] == "cudaGraphLaunch"]
        assert len(graph_calls) == 3  # the prefill and two decode steps
    else:
        ops = [e for e in events if e.get("ph") == "X" and e.get("cat") == "cpu_op"]
        assert len(ops) >= result.metrics["kernels"]


def test_series_and_phases() -> None:
    wl = workload(tiny(), batch=2, prompt_tokens=8, generated_tokens=4, phase="both")
    des, ana = both(wl)
    m = ana.metrics
    assert m["decode_tokens_per_s"] == pytest.approx(2 * 4 / m["decode_latency_s"])
    assert m["prefill_tokens_per_s"] == pytest.approx(2 * 8 / m["prefill_latency_s"])
    assert m["prefill_latency_s"] + m["decode_latency_s"] == pytest.approx(m["inference_latency_s"])
    assert m["gpu_idle_s"] == pytest.approx(m["inference_latency_s"] - m["kernel_time_s"])
    # the series cover the first pass only (the prefill)
    assert len(ana.series["launch_queue_s"]) < m["kernels"] / 2
    for name, values in ana.series.items():
        assert des.series[name] == pytest.approx(values, rel=1e-12, abs=1e-15)


def test_a_decode_only_run_is_all_decode() -> None:
    wl = workload(tiny(), batch=3, prompt_tokens=8, generated_tokens=5, phase="decode")
    des, ana = both(wl)
    for out in (des, ana):
        m = out.metrics
        assert "prefill_latency_s" not in m
        assert m["decode_latency_s"] == m["inference_latency_s"]
        assert m["decode_tokens_per_s"] == pytest.approx(3 * 5 / m["inference_latency_s"])
        assert m["kv_cache_B"] == llm.kv_cache_bytes(wl, 8 + 5)
    assert des.metrics == pytest.approx(ana.metrics, rel=1e-12)


def test_fused_tensor_parallel_runs_alike_in_both_fidelities() -> None:
    wl = LlmInferenceWorkload(
        model=tiny(heads=4, kv_heads=2),
        gpus=["gpu0", "gpu1"],
        tensor_parallel=2,
        batch=2,
        prompt_tokens=8,
        generated_tokens=2,
        phase="both",
        launch="fused",
        runtime="cpp",
    )
    des, ana = both(wl)
    assert ana.metrics["fused_launches_removed"] > 0
    assert des.metrics == pytest.approx(ana.metrics, rel=1e-12, abs=1e-15)
    assert set(des.per_gpu) == {"gpu0", "gpu1"}
    # the C++ runtime pays no framework op and no Python: less host time than PyTorch eager
    eager = wl.model_copy(update={"runtime": "pytorch_eager"})
    slower = llm.analytic(TOPO, PROFILE, eager, seed=0)
    assert ana.per_gpu["gpu0"]["host_s"] < slower.per_gpu["gpu0"]["host_s"]


# -- the spec ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"phase": "decode"}, "needs generated_tokens >= 1"),
        ({"launch": "graph"}, "needs kv_cache 'static'"),
        ({"tensor_parallel": 3}, "does not divide the model's heads"),
        ({"prompt_tokens": 5000}, "exceeds the model's max_positions"),
        ({"dtype": "fp32"}, "is not bf16 or fp16"),
        ({"gpus": ["gpu0", "gpu1"]}, "2 gpus for tensor_parallel 1"),
    ],
)
def test_the_spec_refuses_inconsistent_requests(update: dict[str, object], reason: str) -> None:
    base = {"model": tiny().model_dump(), "batch": 1, "prompt_tokens": 4}
    with pytest.raises(ValidationError, match=reason):
        LlmInferenceWorkload.model_validate(base | update)


def test_a_model_whose_heads_do_not_divide_hidden_is_refused() -> None:
    with pytest.raises(ValidationError, match="heads 3 does not divide hidden 64"):
        tiny(heads=3, kv_heads=1)
    assert tiny(heads=3, kv_heads=1, head_dim=16).head_size == 16


def test_a_workload_file_names_its_model(tmp_path: Path) -> None:
    doc = {"kind": "llm_inference", "model": "gpt2", "batch": 2, "prompt_tokens": 8}
    path = tmp_path / "wl.json"
    path.write_text(json.dumps(doc))
    wl = load_workload(path)
    assert isinstance(wl, LlmInferenceWorkload) and wl.model == load_transformer("gpt2")


def test_an_encoder_has_no_decode() -> None:
    with pytest.raises(ValidationError, match="is an encoder"):
        LlmInferenceWorkload(
            model=load_transformer("bert-base"),
            batch=1,
            prompt_tokens=8,
            generated_tokens=2,
            phase="both",
        )


def test_the_check_wants_enough_gpus_for_tensor_parallelism() -> None:
    wl = LlmInferenceWorkload(
        model=tiny(heads=4, kv_heads=4), batch=1, prompt_tokens=4, tensor_parallel=4
    )
    problems = list(wl.check(make_star_topology(2)))
    assert problems and problems[0][0] == ("tensor_parallel",)
    assert list(wl.check(make_star_topology(4))) == []


def test_metric_names_follow_the_phase() -> None:
    wl = workload(tiny())
    assert llm.metric_names(wl, TOPO, Fidelity.des) == llm.BASE_METRICS | llm.PREFILL_METRICS
    dec = workload(tiny(), phase="decode", generated_tokens=1)
    assert llm.metric_names(dec, TOPO, Fidelity.des) == llm.BASE_METRICS | llm.DECODE_METRICS
