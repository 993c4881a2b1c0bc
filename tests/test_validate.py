"""The validation ledger: loading errors, hand-computed errors and statistics, error rows,
overrides on file and inline scenarios, CSV/JSON output, and the shipped ledger."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import make_profile, make_star_topology

from gpusim.errors import SpecError
from gpusim.quantities import Dimension
from gpusim.validate import (
    CSV_COLUMNS,
    Ledger,
    MetricPathError,
    load_ledger,
    lookup_metric,
    metric_unit,
    validate_ledger,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]

# make_profile(): launch_api_us = 2, doorbell_to_start_us = 1, kernel_floor_us = 2, so a lone null
# kernel starts 2 + 1 = 3 us after its launch call and lasts 2 us (checked in the first test).
LATENCY_US = 3.0
NULL_KERNEL_US = 2.0


def _scenario(fidelity: str = "analytic") -> dict[str, Any]:
    return {
        "name": "null-chain",
        "topology": make_star_topology(1).model_dump(mode="json"),
        "profile": make_profile().model_dump(mode="json"),
        "workload": {"kind": "kernel_chain", "kernel": {"op": "null"}, "count": 1},
        "options": {"fidelity": fidelity},
    }


def _case(
    case_id: str,
    value: float,
    unit: str,
    *,
    metric: str = "metrics.launch_latency_s",
    tolerance_pct: float = 1.0,
    kind: str = "calibration",
    scenario: Any = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    case: dict[str, Any] = {
        "id": case_id,
        "source": f"test {case_id}",
        "scenario": _scenario() if scenario is None else scenario,
        "metric": metric,
        "expected": {"value": value, "unit": unit},
        "tolerance_pct": tolerance_pct,
        "kind": kind,
    }
    if overrides is not None:
        case["overrides"] = overrides
    return case


def _write_ledger(tmp_path: Path, cases: list[dict[str, Any]], name: str = "tiny") -> Path:
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"name": name, "cases": cases}))
    return path


def _run(tmp_path: Path, cases: list[dict[str, Any]]) -> Any:
    path = _write_ledger(tmp_path, cases)
    return validate_ledger(load_ledger(path), path.parent)


def test_fixture_launch_values_are_the_hand_computed_ones() -> None:
    launch = make_profile().launch
    assert launch.launch_api_us.value + launch.doorbell_to_start_us.value == LATENCY_US
    assert launch.kernel_floor_us.value == NULL_KERNEL_US


def test_errors_units_and_statistics(tmp_path: Path) -> None:
    report = _run(
        tmp_path,
        [
            _case("high", 2.5, "us", tolerance_pct=10.0),  # 3 vs 2.5: +20 %, outside 10 %
            _case("exact", 3.0, "us", tolerance_pct=1.0),  # 0 %, within
            # 2 us = 0.002 ms vs 0.0025 ms: -20 %, within 25 %
            _case(
                "ms",
                0.0025,
                "ms",
                metric="metrics.kernel_time_s",
                tolerance_pct=25.0,
                kind="prediction",
            ),
            _case("bad", 1.0, "us", metric="metrics.no_such_metric_s"),
        ],
    )
    by_id = {c.id: c for c in report.cases}
    high, exact, ms, bad = by_id["high"], by_id["exact"], by_id["ms"], by_id["bad"]

    assert high.predicted == pytest.approx(3.0)
    assert high.error_pct == pytest.approx(20.0)
    assert not high.within
    assert high.unit == "us" and high.expected == 2.5 and high.error is None

    assert exact.error_pct == pytest.approx(0.0, abs=1e-9)
    assert exact.within

    assert ms.predicted == pytest.approx(0.002)
    assert ms.error_pct == pytest.approx(-20.0)
    assert ms.within and ms.kind == "prediction"

    assert bad.error is not None and "metrics.no_such_metric_s" in bad.error
    assert "no_such_metric_s" in bad.error and "\n" not in bad.error
    assert bad.predicted is None and bad.error_pct is None and not bad.within

    # over the three cases that ran: |errors| 20, 0, 20
    assert report.median_abs_error_pct == pytest.approx(20.0)
    assert report.max_abs_error_pct == pytest.approx(20.0)
    assert report.share_within == pytest.approx(2 / 3)
    # the one prediction case
    assert report.prediction_median_abs_error_pct == pytest.approx(20.0)
    assert report.prediction_max_abs_error_pct == pytest.approx(20.0)
    assert report.prediction_share_within == 1.0
    assert report.errors == 1
    assert not report.all_within


def test_no_prediction_cases_gives_none(tmp_path: Path) -> None:
    report = _run(tmp_path, [_case("exact", 3.0, "us")])
    assert report.share_within == 1.0 and report.all_within
    assert report.prediction_median_abs_error_pct is None
    assert report.prediction_max_abs_error_pct is None
    assert report.prediction_share_within is None


def test_des_fidelity_agrees(tmp_path: Path) -> None:
    report = _run(tmp_path, [_case("des", 3.0, "us", scenario=_scenario("des"))])
    assert report.cases[0].error is None
    assert report.cases[0].predicted == pytest.approx(LATENCY_US)


def test_overrides_on_file_and_inline_scenarios(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "null.json").write_text(json.dumps(_scenario()))
    profile_only = _scenario()
    (tmp_path / "profile.json").write_text(json.dumps(profile_only.pop("profile")))
    profile_only["profile"] = "profile.json"  # a reference, resolved next to the ledger
    api4 = {"profile.launch.launch_api_us.value": 4.0}  # latency 4 + 1 = 5 us
    report = _run(
        tmp_path,
        [
            _case("file", 5.0, "us", scenario="scenarios/null.json", overrides=api4),
            _case("inline", 5.0, "us", overrides=api4),
            _case("through-ref", 5.0, "us", scenario=profile_only, overrides=api4),
            _case("des", 5.0, "us", overrides={**api4, "options.fidelity": "des"}),
            _case("no-override", 3.0, "us", scenario="scenarios/null.json"),
        ],
    )
    for case in report.cases:
        assert case.error is None, case.error
        assert case.error_pct == pytest.approx(0.0, abs=1e-9), case.id
    # the ledger's own scenario documents are left alone
    assert json.loads((tmp_path / "scenarios" / "null.json").read_text()) == _scenario()
    ledger = load_ledger(tmp_path / "ledger.json")
    validate_ledger(ledger, tmp_path)
    assert ledger.cases[1].scenario == _scenario()


def test_scenario_failures_are_error_rows(tmp_path: Path) -> None:
    broken = _scenario()
    broken["workload"]["count"] = 0
    report = _run(
        tmp_path,
        [
            _case("missing", 3.0, "us", scenario="scenarios/absent.json"),
            _case("invalid", 3.0, "us", scenario=broken),
            _case("bad-override", 3.0, "us", overrides={"workload.count": -1}),
            _case("ok", 3.0, "us"),
        ],
    )
    rows = {c.id: c for c in report.cases}
    missing = rows["missing"].error
    assert missing is not None and "absent.json" in missing and "file not found" in missing
    invalid = rows["invalid"].error
    assert invalid is not None and "$.workload.count" in invalid
    assert "inline scenario of case invalid" in invalid
    bad = rows["bad-override"].error
    assert bad is not None and "$.workload.count" in bad
    assert rows["ok"].within
    assert report.errors == 3
    assert report.share_within == 1.0  # over the one case that ran


def _load_fails(tmp_path: Path, doc: Any) -> SpecError:
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecError) as info:
        load_ledger(path)
    err = info.value
    assert err.file == str(path)
    assert "\n" not in str(err)
    return err


def test_duplicate_id_is_a_one_line_error(tmp_path: Path) -> None:
    err = _load_fails(
        tmp_path,
        {"name": "x", "cases": [_case("a", 3, "us"), _case("b", 3, "us"), _case("a", 3, "us")]},
    )
    assert err.path == "$.cases[2].id"
    assert "duplicate case id 'a'" in err.reason


def test_unknown_unit_is_a_one_line_error(tmp_path: Path) -> None:
    err = _load_fails(tmp_path, {"name": "x", "cases": [_case("a", 3, "fortnights")]})
    assert err.path == "$.cases[0].expected.unit"


def test_unit_must_measure_what_the_metric_does(tmp_path: Path) -> None:
    err = _load_fails(tmp_path, {"name": "x", "cases": [_case("a", 3, "GB/s")]})
    assert err.path == "$.cases[0].expected.unit"
    assert "bandwidth" in err.reason and "time" in err.reason


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda d: d["cases"][0].pop("kind"), "$.cases[0].kind"),
        (lambda d: d["cases"][0].update(kind="fitted"), "$.cases[0].kind"),
        (lambda d: d["cases"][0].update(tolerance_pct=0), "$.cases[0].tolerance_pct"),
        (lambda d: d["cases"][0]["expected"].update(value=0), "$.cases[0].expected.value"),
        (lambda d: d["cases"][0].update(metric="metrics..x_s"), "$.cases[0].metric"),
        (lambda d: d["cases"][0].update(scenario=3), "$.cases[0].scenario"),
        (lambda d: d["cases"][0].update(extra=1), "$.cases[0].extra"),
        (lambda d: d.update(cases=[]), "$.cases"),
    ],
)
def test_field_errors_name_the_json_path(tmp_path: Path, mutate: Any, where: str) -> None:
    doc: dict[str, Any] = {"name": "x", "cases": [_case("a", 3, "us")]}
    mutate(doc)
    assert _load_fails(tmp_path, doc).path == where


def test_missing_and_malformed_ledger_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_ledger(tmp_path / "nope.json")
    assert info.value.path == "$" and "file not found" in info.value.reason
    assert info.value.file == str(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SpecError) as info:
        load_ledger(bad)
    assert info.value.file == str(bad) and "malformed JSON" in info.value.reason


def test_python_built_ledger_is_checked(tmp_path: Path) -> None:
    ledger = Ledger.model_validate({"name": "x", "cases": [_case("a", 3, "us")] * 2})
    with pytest.raises(SpecError, match=r"\$\.cases\[1\]\.id"):
        validate_ledger(ledger, tmp_path)


def test_csv_and_json_outputs(tmp_path: Path) -> None:
    report = _run(
        tmp_path,
        [_case("high", 2.5, "us", tolerance_pct=10.0), _case("bad", 1, "us", metric="metrics.x_s")],
    )
    csv_path, json_path = write_report(report, tmp_path / "out")
    assert csv_path == tmp_path / "out" / "tiny.csv"
    assert json_path == tmp_path / "out" / "tiny.json"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]

    with csv_path.open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == CSV_COLUMNS
        rows = list(reader)
    assert [r["id"] for r in rows] == ["high", "bad"]
    assert float(rows[0]["error_pct"]) == pytest.approx(20.0)
    assert float(rows[0]["predicted"]) == pytest.approx(3.0)
    assert rows[0]["within"] == "false" and rows[0]["error"] == ""
    assert rows[0]["profile_id"] == "test-profile" and rows[0]["unit"] == "us"
    assert rows[1]["predicted"] == "" and "metrics.x_s" in rows[1]["error"]

    data = json.loads(json_path.read_text())
    assert data["ledger"] == "tiny"
    assert data["cases_total"] == 2 and data["cases_errored"] == 1
    assert data["median_abs_error_pct"] == pytest.approx(20.0)
    assert data["max_abs_error_pct"] == pytest.approx(20.0)
    assert data["share_within"] == 0.0
    assert data["prediction_median_abs_error_pct"] is None
    assert [set(c) for c in data["cases"]] == [set(CSV_COLUMNS)] * 2
    assert data["cases"][1]["predicted"] is None


def test_lookup_metric_paths() -> None:
    summary = {
        "makespan_s": 2.0,
        "metrics": {"kernel_time_s": 1.0, "flag": True},
        "per_gpu": {"n0.gpu0": {"busy_s": 0.5}},
        "series": {"finish_s": [0.1, 0.2]},
    }
    assert lookup_metric(summary, "makespan_s") == 2.0
    assert lookup_metric(summary, "per_gpu.n0.gpu0.busy_s") == 0.5  # a dotted GPU id
    assert lookup_metric(summary, "series.finish_s.1") == 0.2
    for bad in ("metrics.flag", "metrics", "per_gpu.gpu9.busy_s", "makespan_s.x"):
        with pytest.raises(MetricPathError, match=bad.replace(".", r"\.")):
            lookup_metric(summary, bad)


def test_metric_units_from_suffixes() -> None:
    assert metric_unit("metrics.kernel_time_s") == (Dimension.time, 1.0)
    assert metric_unit("metrics.alltoall_algbw_GBps") == (Dimension.bandwidth, 1e9)
    assert metric_unit("metrics.bytes_moved") == (Dimension.size, 1.0)
    assert metric_unit("link_bytes.gpu0-sw") == (Dimension.size, 1.0)
    assert metric_unit("metrics.gpu_busy_fraction") == (Dimension.dimensionless, 1.0)
    assert metric_unit("metrics.kernel_launches") == (Dimension.dimensionless, 1.0)
    assert metric_unit("metrics.throughput_tokens_per_s") == (Dimension.rate, 1.0)  # not a time


def test_a_rate_metric_is_not_checked_against_seconds(tmp_path: Path) -> None:
    path = _write_ledger(
        tmp_path, [_case("tput", 1.0, "s", metric="metrics.throughput_tokens_per_s")]
    )
    with pytest.raises(SpecError, match=r"unit 's' is a time but metric .* is a rate"):
        load_ledger(path)


def test_percent_against_a_fraction(tmp_path: Path) -> None:
    # 1 null kernel of 2 us in a makespan of 3 + 2 + 1 (sync return) = 6 us: busy 1/3 = 33.33 %
    report = _run(tmp_path, [_case("busy", 100 / 3, "%", metric="metrics.gpu_busy_fraction")])
    assert report.cases[0].predicted == pytest.approx(100 / 3)
    assert report.cases[0].within


def test_shipped_calibration_points_ledger() -> None:
    ledger_path = REPO / "validation" / "calibration_points.json"
    ledger = load_ledger(ledger_path)
    assert [c.id for c in ledger.cases] == [
        "SK-1", "SK-2", "SK-3", "SK-4", "SK-5", "SK-6", "FL-1", "FL-2", "FM-1", "FM-2",
        "LC-1", "LC-2", "LC-3",
    ]  # fmt: skip
    report = validate_ledger(ledger, ledger_path.parent)
    assert report.errors == 0, [c.error for c in report.cases]
    for case in report.cases:
        if case.kind == "calibration":  # fitted: reproduced within the fit's tolerance
            assert case.within, (case.id, case.error_pct)
    # predictions are reported, not asserted: their errors are the ledger's finding
    assert {c.id for c in report.cases if c.kind == "prediction"} == {"FL-1", "FM-1", "FM-2"}
    assert report.prediction_max_abs_error_pct is not None
