"""The results store of a sweep: an append-only record of finished points, compacted into one
Parquet dataset.

Layout of a results folder::

    sweep.json            the manifest: sweep name, axes, systems, metrics, and every point
    results.jsonl         finished points not yet compacted: one JSON line per point (its scenario
                          hash and result), each written with one append and flushed the moment
                          the point finishes, so a killed sweep loses no finished point
    rows.parquet          every compacted result, one row per scenario hash (the hash is the
                          ``scenario_hash`` column)
    failed/<hash>.json    a scenario that raised: its one-line error and its traceback (retried
                          on the next run)
    traces/<hash>.json    the Chrome/Perfetto trace, for scenarios that record one
    summary.csv           one row per point: axes, system, seed, status, metrics

:meth:`ResultStore.compact` folds the record into ``rows.parquet`` (written to a temporary name
and renamed into place, then the record emptied the same way): at the start of a run (which
also resumes it) and at its end. A point is kept once, by its scenario hash, wherever it is
stored. A record line cut short by a kill, or a ``rows.parquet`` damaged all the same (a full
disk, a copy cut short), reads as missing: its points are computed again and a report shows them
as pending. Folders written by earlier versions (one ``shards/<hash>.parquet`` per point) are
read, and folded into ``rows.parquet`` by the next run.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpusim.errors import SpecError
from gpusim.export.files import atomic_path, write_json_atomic, write_text_atomic
from gpusim.spec.provenance import read_json

if TYPE_CHECKING:
    import pyarrow as pa

MANIFEST = "sweep.json"
SUMMARY = "summary.csv"
RECORD = "results.jsonl"
ROWS = "rows.parquet"
HASH_COLUMN = "scenario_hash"
JSON_COLUMN = b"gpusim.json"
"""Field metadata key of a column stored as JSON text (its rows hold values of several types)."""


class ResultStore:
    """Read and write one sweep's results folder. Results are read once and then kept in
    memory, with what this process adds (a summary needs no second reading)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.failed = self.root / "failed"
        self.traces = self.root / "traces"
        self.record = self.root / RECORD
        self.dataset = self.root / ROWS
        self._results: dict[str, dict[str, Any]] | None = None
        self._unreadable: list[Path] = []
        self._manifest: dict[str, Any] | None = None
        self._fd: int | None = None
        self._failed: set[str] | None = None

    def prepare(self) -> None:
        """Create the folders and remove temporary files left by an interrupted run."""
        for folder in (self.root, self.failed, self.traces):
            folder.mkdir(parents=True, exist_ok=True)
        for folder in (self.root, self.shards, self.failed, self.traces):
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)

    def done_hashes(self) -> set[str]:
        """Scenario hashes whose results are stored."""
        return set(self.results())

    def unreadable_shards(self) -> list[Path]:
        """Stored files that do not read, wholly or in part (a truncated ``rows.parquet``, a
        record line cut short, a damaged old-style shard): their points show as pending."""
        self.results()
        return list(self._unreadable)

    def drop_unreadable_shards(self) -> list[Path]:
        """Compact the store (see :meth:`compact`), so the points of the files that do not read
        run again; those files."""
        return self.compact()

    def compact(self) -> list[Path]:
        """Fold the record (and any old-style shards) into ``rows.parquet``, atomically, then
        empty the record and remove the shards; the files that did not read (their points
        are no longer stored)."""
        self.close()
        results = self.results()
        damaged = list(self._unreadable)
        legacy = sorted(self.shards.glob("*.parquet")) if self.shards.is_dir() else []
        record_used = self.record.is_file() and self.record.stat().st_size > 0
        if results or self.dataset.exists():
            with atomic_path(self.dataset) as tmp:
                _write_rows(tmp, results)
        if record_used:
            write_text_atomic(self.record, "")
        for shard in legacy:
            shard.unlink(missing_ok=True)
        self._unreadable = []
        return damaged

    def write_result(self, scenario_hash: str, record: dict[str, Any]) -> None:
        """Store one scenario's result (a flat dict of scalars), see :meth:`write_results`."""
        self.write_results([(scenario_hash, record)])

    def write_results(self, results: list[tuple[str, dict[str, Any]]]) -> None:
        """Store scenarios' results (scenario hash, flat dict of scalars): a line each,
        appended to the record in a single write, so they are stored the moment this
        returns (a kill cuts at most the end of that write short)."""
        if not results:
            return
        text = "".join(
            json.dumps({HASH_COLUMN: scenario_hash, "record": record}) + "\n"
            for scenario_hash, record in results
        )
        if self._fd is None:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        data = text.encode()
        while data:  # a regular file takes the whole write; loop all the same
            data = data[os.write(self._fd, data) :]
        stored = self.results()
        failed = self._failed_hashes()
        for scenario_hash, record in results:
            stored[scenario_hash] = record
            if scenario_hash in failed:
                (self.failed / f"{scenario_hash}.json").unlink(missing_ok=True)
                failed.discard(scenario_hash)

    def _failed_hashes(self) -> set[str]:
        """The hashes with a failure record, listed once (this process keeps the set)."""
        if self._failed is None:
            self._failed = {p.stem for p in self.failed.glob("*.json")}
        return self._failed

    def close(self) -> None:
        """Close the record (reopened by the next :meth:`write_result`)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def write_failure(self, scenario_hash: str, error: str, traceback: str | None = None) -> None:
        """Record that a scenario raised: the one-line ``error`` and, when known, the formatted
        ``traceback`` beside it."""
        doc = {"error": error} if traceback is None else {"error": error, "traceback": traceback}
        write_json_atomic(self.failed / f"{scenario_hash}.json", doc)
        self._failed_hashes().add(scenario_hash)

    def write_trace(self, scenario_hash: str, chrome_trace: dict[str, Any]) -> None:
        """Store a scenario's Chrome trace."""
        write_json_atomic(self.traces / f"{scenario_hash}.json", chrome_trace)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Store the sweep manifest: indented JSON, each of its ``points`` on one line."""
        write_text_atomic(self.root / MANIFEST, manifest_text(manifest))
        self._manifest = manifest

    def has_manifest(self) -> bool:
        """Whether the manifest has been written."""
        return (self.root / MANIFEST).is_file()

    def read_manifest(self) -> dict[str, Any]:
        """The sweep manifest: a SpecError when this is not a results folder or the manifest
        is damaged."""
        if self._manifest is not None:
            return self._manifest
        path = self.root / MANIFEST
        if not path.is_file():
            raise SpecError(self.root, "$", f"not a sweep results folder (no {MANIFEST})")
        data = read_json(path)
        points = data.get("points") if isinstance(data, dict) else None
        if not isinstance(points, list) or not all(_is_entry(p) for p in points):
            raise SpecError(path, "$.points", "not a sweep manifest (points are missing or bad)")
        manifest: dict[str, Any] = data
        self._manifest = manifest
        return manifest

    def results(self) -> dict[str, dict[str, Any]]:
        """Every stored result that reads, by scenario hash (see :meth:`unreadable_shards`)."""
        if self._results is None:
            self._results, self._unreadable = self._read_results()
        return self._results

    def _read_results(self) -> tuple[dict[str, dict[str, Any]], list[Path]]:
        out: dict[str, dict[str, Any]] = {}
        damaged: list[Path] = []
        sources: list[tuple[Path, list[tuple[str, dict[str, Any]]] | None]] = []
        if self.dataset.exists():
            sources.append((self.dataset, _read_rows(self.dataset)))
        if self.shards.is_dir():
            sources.extend((s, _read_shard(s)) for s in sorted(self.shards.glob("*.parquet")))
        if self.record.exists():
            records, torn = _read_record(self.record)
            sources.append((self.record, records))
            if torn:
                damaged.append(self.record)
        for path, rows in sources:
            if rows is None:
                damaged.append(path)
                continue
            for scenario_hash, row in rows:
                out.setdefault(scenario_hash, row)
        return out, damaged

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
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        names = list(columns)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")  # what DictWriter writes, a list a row
        writer.writerow(names)
        writer.writerows([row.get(name, "") for name in names] for row in rows)
        path = self.root / SUMMARY
        write_text_atomic(path, buf.getvalue())
        return path


def _read_record(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], bool]:
    """The record's entries, and whether any line did not read (cut short by a kill)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return [], True
    entries: list[tuple[str, dict[str, Any]]] = []
    torn = False
    lines = text.split("\n")
    if lines[-1]:
        torn = True  # the last line has no newline: its write was cut short
    for line in lines[:-1]:
        try:
            doc = json.loads(line)
            entries.append((str(doc[HASH_COLUMN]), dict(doc["record"])))
        except (ValueError, KeyError, TypeError):
            torn = True
    return entries, torn


def _arrow_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (OSError, ValueError, pa.ArrowException)


def _read_rows(path: Path) -> list[tuple[str, dict[str, Any]]] | None:
    """The rows of ``rows.parquet`` by scenario hash, or None when it does not read."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
        columns = {name: _column_values(table, name) for name in table.column_names}
    except _arrow_errors():
        return None
    hashes = columns.pop(HASH_COLUMN, None)
    if hashes is None:
        return None
    rows = []
    for i, scenario_hash in enumerate(hashes):
        row = {name: values[i] for name, values in columns.items() if values[i] is not _ABSENT}
        rows.append((str(scenario_hash), row))
    return rows


_ABSENT = object()
"""A row without the column (a null in Parquet)."""


def _column_values(table: pa.Table, name: str) -> list[Any]:
    field = table.schema.field(name)
    values: list[Any] = table.column(name).to_pylist()
    if field.metadata and JSON_COLUMN in field.metadata:
        return [_ABSENT if v is None else json.loads(v) for v in values]
    return [_ABSENT if v is None else v for v in values]


def _write_rows(path: Path, results: dict[str, dict[str, Any]]) -> None:
    """``results`` as one Parquet table, a row per scenario hash. A column whose rows hold
    values of different types (an int here, a float there) or None is stored as JSON text, so
    every value reads back as it was written (null: the row has no such key)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names: dict[str, None] = {}
    for row in results.values():
        names.update(dict.fromkeys(row))
    names.pop(HASH_COLUMN, None)
    fields = [pa.field(HASH_COLUMN, pa.string())]
    arrays = [pa.array(list(results), pa.string())]
    for name in names:
        values = [row.get(name) for row in results.values()]
        kinds = {type(row[name]) for row in results.values() if name in row}
        array = None
        if len(kinds) == 1 and type(None) not in kinds:
            try:
                array = pa.array(values)
            except (pa.ArrowException, OverflowError):
                array = None
        if array is None:  # absent: null; present: its JSON (a None is "null")
            texts = [json.dumps(row[name]) if name in row else None for row in results.values()]
            fields.append(pa.field(name, pa.string(), metadata={JSON_COLUMN: b"1"}))
            arrays.append(pa.array(texts, pa.string()))
        else:
            fields.append(pa.field(name, array.type))
            arrays.append(array)
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields)), path)


def _read_shard(shard: Path) -> list[tuple[str, dict[str, Any]]] | None:
    """The one row of an old-style shard (by its file name's hash), or None when it does not
    read."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(shard).to_pylist()
    except _arrow_errors():
        return None
    if not rows or not isinstance(rows[0], dict):
        return None
    return [(shard.stem, rows[0])]


def manifest_text(manifest: dict[str, Any]) -> str:
    """``manifest`` as JSON indented by 2, but for its ``points``, one compact line each: the
    same document, written by the C encoder (``indent`` takes the pure-Python one, which cost
    the calling process of a 10,000-point sweep more than storing all its results)."""
    points = manifest.get("points")
    if not isinstance(points, list) or not points or next(reversed(manifest)) != "points":
        return json.dumps(manifest, indent=2) + "\n"
    head = json.dumps({k: v for k, v in manifest.items() if k != "points"}, indent=2)
    lines = ",\n    ".join(json.dumps(point) for point in points)
    body = f'  "points": [\n    {lines}\n  ]\n}}\n'
    return "{\n" + body if head == "{}" else f"{head[:-2]},\n{body}"


def _is_entry(point: Any) -> bool:
    keys = ("point", "system", "axes", "seed", "scenario_hash")
    return isinstance(point, dict) and all(k in point for k in keys)
