"""The model zoo (models/*.json): a spec kind of its own that the loader, `gpusim check`,
`gpusim list`, scenario references and overrides know."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpusim.cli import app
from gpusim.errors import SpecError
from gpusim.spec.detect import detect_kind
from gpusim.spec.loading import load_model, load_scenario, load_transformer
from gpusim.spec.model_zoo import TransformerModel
from gpusim.spec.refs import SHIPPED_DIRS, data_root

ROOT = data_root()
MODEL_FILES = sorted((ROOT / SHIPPED_DIRS["model"]).glob("*.json"))

# Parameter totals as the model cards (and the OPT paper) state them, to the digits they give.
PUBLISHED_PARAMETERS = {
    "llama-3.2-1b": 1.23e9,  # Llama 3.2 model card: "1.23B"
    "llama-3.1-8b": 8.03e9,  # Llama 3.1 model card: "8.03B" (HF page: 8.03B params)
    "llama-3.1-70b": 70.6e9,  # Llama 3.1 model card: "70.6B"
    "gpt2": 124e6,  # GPT-2 model card: "the smallest version of GPT-2, with 124M parameters"
    "gpt2-large": 774e6,  # GPT-2 Large model card: "the 774M parameter version of GPT-2"
    "bert-base": 110e6,  # BERT paper / model card: 110M (with the pooler, 0.6M, not modelled)
    "xlm-roberta-base": 270e6,  # XLM-R paper, Table 7: 270M
    "opt-30b": 30e9,  # OPT paper, Table 1
    "opt-66b": 66e9,
    "opt-175b": 175e9,
    "mt5-small": 300e6,  # LLMCad Table 3 (llmcad.md section 8): "mT5-small (0.3B)"
    "mt5-large": 1.2e9,  # LLMCad Tables 1 and 3: "mT5-Large (1.2B)"
}


def test_every_shipped_model_is_listed_here() -> None:
    assert {p.stem for p in MODEL_FILES} == set(PUBLISHED_PARAMETERS)


@pytest.mark.parametrize("path", MODEL_FILES, ids=[p.stem for p in MODEL_FILES])
def test_shipped_model_matches_its_published_parameter_count(path: Path) -> None:
    model = load_model(TransformerModel, path)
    assert model.source.startswith(("https://", "Zhang et al."))
    # the count follows from the shape fields alone: a wrong layer count, width or vocabulary
    # moves it by far more than the 3% allowed for rounding in the published figures
    assert model.parameters() == pytest.approx(PUBLISHED_PARAMETERS[path.stem], rel=0.03)


def test_parameter_count_closed_form_for_gpt2() -> None:
    m = load_transformer("gpt2")
    h, f, v, p, layers = 768, 3072, 50257, 1024, 12
    per_layer = (4 * h * h + 4 * h) + (2 * h * f + f + h) + 2 * 2 * h
    assert m.parameters() == layers * per_layer + v * h + p * h + 2 * h == 124_439_808


def test_llama_head_sizes() -> None:
    m = load_transformer("llama-3.1-8b")
    assert (m.head_size, m.q_width, m.kv_width) == (128, 4096, 1024)


def test_a_model_file_is_detected_and_checked() -> None:
    path = ROOT / "models/llama-3.2-1b.json"
    assert detect_kind(json.loads(path.read_text())) == "model"
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "model 'Llama-3.2-1B'" in result.output


def test_list_shows_the_models() -> None:
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0
    assert "models/" in result.output and "llama-3.1-70b" in result.output


def test_heads_must_be_a_multiple_of_kv_heads(tmp_path: Path) -> None:
    raw = json.loads((ROOT / "models/llama-3.2-1b.json").read_text())
    raw["kv_heads"] = 5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(raw))
    with pytest.raises(SpecError, match=r"bad\.json: \$: .*kv_heads 5 does not divide heads 32"):
        load_model(TransformerModel, bad)


def _scenario(tmp_path: Path, model: object) -> Path:
    doc = {
        "name": "zoo",
        "topology": "h100_pcie_1gpu",
        "workload": {"kind": "llm_inference", "model": model, "batch": 1, "prompt_tokens": 8},
    }
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_scenario_names_a_model_of_the_zoo(tmp_path: Path) -> None:
    scenario = load_scenario(_scenario(tmp_path, "gpt2"))
    assert scenario.workload.kind == "llm_inference"
    assert scenario.workload.model == load_transformer("gpt2")


def test_an_override_swaps_the_model_by_name(tmp_path: Path) -> None:
    path = _scenario(tmp_path, "gpt2")
    scenario = load_scenario(path, {"workload.model": "bert-base"})
    assert scenario.workload.kind == "llm_inference"
    assert scenario.workload.model.name == "BERT-base (uncased)"
    deeper = load_scenario(path, {"workload.model.layers": 2})
    assert deeper.workload.kind == "llm_inference"
    assert deeper.workload.model.layers == 2


def test_an_unknown_model_is_one_line_naming_the_shipped_ones(tmp_path: Path) -> None:
    path = _scenario(tmp_path, "llama-9")
    with pytest.raises(SpecError) as err:
        load_scenario(path)
    text = str(err.value)
    assert "\n" not in text
    assert "$.workload.model" in text and "unknown model 'llama-9'" in text and "gpt2" in text
