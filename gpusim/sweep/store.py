"""The results store of a sweep: content-addressed Parquet shards, written atomically.

Layout of a results folder::

    sweep.json            the manifest: sweep name, axes, systems, metrics, and every point
    shards/<hash>.parquet one finished scenario's result (hash = content hash of the scenario)
    failed/<hash>.json    a scenario that raised: its one-line error and its traceback (retried
                          on the next run)
    traces/<hash>.json    the Chrome/Perfetto trace, for scenarios that record one
    summary.csv           one row per point: axes, system, seed, status, metrics

A reader only ever sees complete files: each is written to a temporary name in the same folder
and renamed into place. A shard damaged all the same (a full disk, a copy cut short) reads as
missing: the sweep recomputes it and a report shows its point as pending.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gpusim.errors import SpecError
from gpusim.export.files import atomic_path, write_json_atomic, write_text_atomic
from gpusim.spec.provenance import read_json

MANIFEST = "sweep.json"
SUMMARY = "summary.csv"


class ResultStore:
    """Read and write one sweep's results folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.failed = self.root / "failed"
        self.traces = self.root / "traces"

    def prepare(self) -> None:
        """Create the folders and remove temporary files left by an interrupted run."""
        for folder in (self.shards, self.failed, self.traces):
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)

    def done_hashes(self) -> set[str]:
        """Scenario hashes whose results are stored."""
        return {p.stem for p in self.shards.glob("*.parquet")}

    def unreadable_shards(self) -> list[Path]:
        """Shards that do not read as a one-row table (truncated, emptied, not Parquet)."""
        return [
            shard for shard in sorted(self.shards.glob("*.parquet")) if _read_shard(shard) is None
        ]

    def drop_unreadable_shards(self) -> list[Path]:
        """Remove the shards that do not read, so their points run again; the removed paths."""
        bad = self.unreadable_shards()
        for shard in bad:
            shard.unlink(missing_ok=True)
        return bad

    def write_result(self, scenario_hash: str, record: dict[str, Any]) -> None:
        """Store one scenario's result (a flat dict of scalars) as a one-row Parquet shard."""
        table = pa.Table.from_pylist([record])
        final = self.shards / f"{scenario_hash}.parquet"
        with atomic_path(final) as tmp:
            pq.write_table(table, tmp)
        (self.failed / f"{scenario_hash}.json").unlink(missing_ok=True)

    def write_failure(self, scenario_hash: str, error: str, traceback: str | None = None) -> None:
        """Record that a scenario raised: the one-line ``error`` and, when known, the formatted
        ``traceback`` beside it."""
        doc = {"error": error} if traceback is None else {"error": error, "traceback": traceback}
        write_json_atomic(self.failed / f"{scenario_hash}.json", doc)

    def write_trace(self, scenario_hash: str, chrome_trace: dict[str, Any]) -> None:
        """Store a scenario's Chrome trace."""
        write_json_atomic(self.traces / f"{scenario_hash}.json", chrome_trace)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Store the sweep manifest."""
        write_json_atomic(self.root / MANIFEST, manifest)

    def has_manifest(self) -> bool:
        """Whether the manifest has been written."""
        return (self.root / MANIFEST).is_file()

    def read_manifest(self) -> dict[str, Any]:
        """The sweep manifest: a SpecError when this is not a results folder or the manifest
        is damaged."""
        path = self.root / MANIFEST
        if not path.is_file():
            raise SpecError(self.root, "$", f"not a sweep results folder (no {MANIFEST})")
        data = read_json(path)
        points = data.get("points") if isinstance(data, dict) else None
        if not isinstance(points, list) or not all(_is_entry(p) for p in points):
            raise SpecError(path, "$.points", "not a sweep manifest (points are missing or bad)")
        manifest: dict[str, Any] = data
        return manifest

    def results(self) -> dict[str, dict[str, Any]]:
        """Every stored result that reads, by scenario hash (see :meth:`unreadable_shards`)."""
        out: dict[str, dict[str, Any]] = {}
        for shard in sorted(self.shards.glob("*.parquet")):
            row = _read_shard(shard)
            if row is not None:
                out[shard.stem] = row
        return out

    def failures(self) -> dict[str, str]:
        """Every recorded failure's one-line error, by scenario hash (unreadable records say
        so instead)."""
        out: dict[str, str] = {}
        for path in sorted(self.failed.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                out[path.stem] = " ".join(str(doc.get("error", "")).split())
            except (OSError, ValueError, AttributeError):
                out[path.stem] = "failed (its error record does not read)"
        return out

    def trace_path(self, scenario_hash: str) -> Path | None:
        """Where a scenario's trace is stored, if it is."""
        path = self.traces / f"{scenario_hash}.json"
        return path if path.is_file() else None

    def rows(self) -> list[dict[str, Any]]:
        """One row per manifest point: coordinates, status and (when finished) metrics."""
        manifest = self.read_manifest()
        results, failures = self.results(), self.failures()
        rows = []
        for point in manifest["points"]:
            h = point["scenario_hash"]
            row: dict[str, Any] = {
                "point": point["point"],
                "system": point["system"],
                **point["axes"],
                "seed": point["seed"],
                "scenario_hash": h,
            }
            if h in results:
                row.update({"status": "ok", "error": ""})
                row.update({k: v for k, v in results[h].items() if k not in row})
            elif h in failures:
                row.update({"status": "failed", "error": failures[h]})
            else:
                row.update({"status": "pending", "error": ""})
            rows.append(row)
        return rows

    def write_summary_csv(self, rows: list[dict[str, Any]]) -> Path:
        """Write ``summary.csv`` (union of all columns, in first-seen order) atomically."""
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path = self.root / SUMMARY
        write_text_atomic(path, buf.getvalue())
        return path


def _read_shard(shard: Path) -> dict[str, Any] | None:
    """The one row of a shard, or None when the shard does not read."""
    try:
        rows = pq.read_table(shard).to_pylist()
    except (OSError, ValueError, pa.ArrowException):
        return None
    return rows[0] if rows and isinstance(rows[0], dict) else None


def _is_entry(point: Any) -> bool:
    keys = ("point", "system", "axes", "seed", "scenario_hash")
    return isinstance(point, dict) and all(k in point for k in keys)
