"""Golden snapshots: every shipped scenario, every system of every shipped sweep (at its first
point) and the validation ledger predict exactly what tests/golden/snapshots.json recorded.

This is the safety net of refactors that change no result, not a physics test: a physics change
regenerates the snapshots deliberately (``python tests/golden/snapshot.py``) in a commit of its
own that says which numbers moved and why.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from golden import snapshot as snap

from gpusim.spec.loading import load_scenario

RECORDED: dict[str, Any] = json.loads(snap.SNAPSHOT_FILE.read_text())


def _runs() -> list[tuple[str, Any, str]]:
    runs: list[tuple[str, Any, str]] = []
    for path in snap.shipped_scenarios():
        for fid in snap.FIDELITIES:
            runs.append((f"{path.parent.name}/{path.stem}:{fid}", path, fid))
    for path in snap.shipped_sweeps():
        for system in snap.sweep_probe_points(path):
            for fid in snap.FIDELITIES:
                runs.append((f"sweep/{path.stem}/{system}:{fid}", (path, system), fid))
    return runs


RUNS = _runs()


def test_every_recorded_run_is_still_shipped() -> None:
    assert {key for key, _, _ in RUNS} == set(RECORDED["scenarios"])


@pytest.mark.parametrize(("key", "source", "fidelity"), RUNS, ids=[r[0] for r in RUNS])
def test_run_matches_its_snapshot(key: str, source: Any, fidelity: str) -> None:
    if isinstance(source, tuple):
        path, system = source
        scenario = snap.sweep_probe_points(path)[system]
    else:
        scenario = load_scenario(source)
    got = snap.outputs(scenario, fidelity)
    assert snap.differences(RECORDED["scenarios"][key], got) == []


def test_ledger_predictions_match_their_snapshot() -> None:
    assert snap.differences(RECORDED["ledger"], snap.ledger_predictions()) == []
