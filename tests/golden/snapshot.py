"""Golden snapshots: what every shipped scenario and the validation ledger predict today.

These are regression snapshots, not physics assertions: they pin the model's outputs so that a
refactor that claims to change no result can prove it (tests/test_golden.py compares against them,
exactly). Physics is tested elsewhere against closed forms. Regenerating them is a deliberate,
reviewed step that belongs in a commit of its own, with the reason for every moved number:

    python tests/golden/snapshot.py            # rewrite tests/golden/snapshots.json
    python tests/golden/snapshot.py --check    # compare only (what the test does), exit 1 on drift
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT_FILE = Path(__file__).with_name("snapshots.json")
FIDELITIES = ("des", "analytic")


def shipped_scenarios() -> list[Path]:
    """Every scenario file under workloads/ and validation/scenarios/ (sweeps excluded)."""
    from gpusim.spec.detect import detect_kind

    files = sorted((ROOT / "workloads").glob("*.json")) + sorted(
        (ROOT / "validation" / "scenarios").glob("*.json")
    )
    return [p for p in files if detect_kind(json.loads(p.read_text())) == "scenario"]


def shipped_sweeps() -> list[Path]:
    """Every sweep file under workloads/."""
    from gpusim.spec.detect import detect_kind

    files = sorted((ROOT / "workloads").glob("*.json"))
    return [p for p in files if detect_kind(json.loads(p.read_text())) == "sweep"]


def sweep_probe_points(path: Path) -> dict[str, Any]:
    """Each system of a sweep at the sweep's first axis values and first seed: every strategy a
    sweep compares, at its cheapest representative point."""
    from gpusim.sweep.expand import iter_points
    from gpusim.sweep.spec import load_sweep

    sweep = load_sweep(path)
    first = {p: [values[0]] for p, values in sweep.axes.items()}
    probe = sweep.model_copy(update={"axes": first, "seeds": [], "replicas": None})
    return {point.system or "base": point.scenario for point in iter_points(probe, path)}


def outputs(scenario: Any, fidelity: str) -> dict[str, Any]:
    """The result fields of one run that a no-behaviour-change refactor must keep."""
    from gpusim import simulate
    from gpusim.spec.scenario import Fidelity

    options = scenario.options.model_copy(update={"fidelity": Fidelity(fidelity), "trace": False})
    result = simulate(scenario.model_copy(update={"options": options}))
    return {
        "makespan_s": result.makespan_s,
        "metrics": result.metrics,
        "per_gpu": result.per_gpu,
        "link_bytes": result.link_bytes,
        "series": result.series,
    }


def ledger_predictions() -> dict[str, float | None]:
    """The validation ledger's prediction per case, in the ledger's unit."""
    from gpusim.validate.ledger import load_ledger
    from gpusim.validate.run import validate_ledger

    path = ROOT / "validation" / "calibration_points.json"
    report = validate_ledger(load_ledger(path), path.parent)
    return {case.id: case.predicted for case in report.cases}


def take() -> dict[str, Any]:
    """Every snapshot, keyed by ``<folder>/<file stem>:<fidelity>``."""
    from gpusim.spec.loading import load_scenario

    scenarios = {
        f"{p.parent.name}/{p.stem}:{fid}": outputs(load_scenario(p), fid)
        for p in shipped_scenarios()
        for fid in FIDELITIES
    }
    for path in shipped_sweeps():
        for system, scenario in sweep_probe_points(path).items():
            for fid in FIDELITIES:
                scenarios[f"sweep/{path.stem}/{system}:{fid}"] = outputs(scenario, fid)
    return {"scenarios": scenarios, "ledger": ledger_predictions()}


def differences(want: Any, got: Any, where: str = "") -> list[str]:
    """Every place where ``got`` is not exactly ``want`` (NaN equal to NaN)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}.{k}: missing" for k in want if k not in got]
        out += [f"{where}.{k}: new" for k in got if k not in want]
        for k in want:
            if k in got:
                out += differences(want[k], got[k], f"{where}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: length {len(got)} != {len(want)}"]
        pairs = enumerate(zip(want, got, strict=True))
        return [d for i, (a, b) in pairs for d in differences(a, b, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float) and math.isnan(want) and math.isnan(got):
        return []
    if want != got:
        return [f"{where}: {got!r} != {want!r}"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    args = parser.parse_args()
    now = take()
    if args.check:
        diffs = differences(json.loads(SNAPSHOT_FILE.read_text()), now)
        for d in diffs:
            print(d)
        print(f"{len(diffs)} differences")
        return 1 if diffs else 0
    SNAPSHOT_FILE.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    print(
        f"wrote {SNAPSHOT_FILE.relative_to(ROOT)}: {len(now['scenarios'])} runs, "
        f"{len(now['ledger'])} ledger cases"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
