"""The read models for analysts: CSV (no extra), Parquet or a DuckDB file (extra `analytics`).

DuckDB is the one library used for both binary formats: it writes Parquet itself, types the
columns from the read models' schema, and is a single wheel with no other dependency.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from baton.domain.errors import BatonError
from baton.projections.schema import AGENT_STATS, TABLES, Table
from baton.readmodels.reading import ReadModels

__all__ = ["EXPORT_FORMATS", "ExportError", "export_views", "stats_csv"]

EXPORT_FORMATS = ("parquet", "duckdb", "csv")

_DUCKDB_TYPES = {
    "text": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "time": "TIMESTAMPTZ",
    "json": "VARCHAR",  # JSON text; DuckDB's json functions read it as is
}


class ExportError(BatonError):
    pass


# Sums of floats carry binary noise (0.026399999999999996): money is written to the
# nano-dollar, durations to the microsecond, in every export.
_MONEY_DIGITS, _MS_DIGITS = 9, 3


def _cell(value: Any, kind: str, name: str = "") -> Any:
    if value is None:
        return ""
    if kind == "time":
        return value.isoformat()
    if kind == "json":
        return json.dumps(value, sort_keys=True)
    if kind == "float" and isinstance(value, float):
        return round(value, _MS_DIGITS if name.endswith("_ms") else _MONEY_DIGITS)
    return value


def _write_csv(out: Any, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.names)
    for row in rows:
        writer.writerow([_cell(row[c.name], c.kind, c.name) for c in table.columns])


def stats_csv(rows: Sequence[dict[str, Any]]) -> str:
    """agent_stats as CSV, every column, header first."""
    out = io.StringIO()
    _write_csv(out, AGENT_STATS, rows)
    return out.getvalue()


def export_views(models: ReadModels, path: str, *, fmt: str) -> list[str]:
    """Write every read-model table; returns one line per file or table written."""
    target = Path(path)
    with models.views.reading() as read:  # one snapshot: tables that agree with each other
        tables = [(table, read.rows(table)) for table in TABLES]
    if fmt == "csv":
        _directory(target)
        return [_csv_file(target, table, rows) for table, rows in tables]
    try:
        import duckdb
    except ImportError:
        raise ExportError(
            f"--format {fmt} needs DuckDB: pip install 'baton[analytics]' (or use --format csv)"
        ) from None
    with tempfile.TemporaryDirectory() as scratch:
        staged = []
        for table, rows in tables:  # DuckDB reads CSV fast; it is our staging format
            csv_path = Path(scratch) / f"{table.name}.csv"
            with csv_path.open("w", encoding="utf-8", newline="") as out:
                _write_csv(out, table, rows)
            staged.append((table, len(rows), csv_path))
        if fmt == "duckdb":
            if target.exists():
                raise ExportError(f"{path}: already exists; choose a new file")
            if not target.parent.is_dir():
                raise ExportError(f"{path}: directory {str(target.parent)!r} does not exist")
            connection = duckdb.connect(str(target))
            try:
                for table, _count, csv_path in staged:
                    connection.execute(
                        f"CREATE TABLE {table.name} AS SELECT * FROM {_reader(table, csv_path)}"
                    )
            finally:
                connection.close()
            return [f"{target}: {table.name} ({count} rows)" for table, count, _ in staged]
        _directory(target)
        connection = duckdb.connect()
        try:
            lines = []
            for table, count, csv_path in staged:
                out_path = target / f"{table.name}.parquet"
                connection.execute(
                    f"COPY (SELECT * FROM {_reader(table, csv_path)}) TO '{_quoted(out_path)}' "
                    "(FORMAT PARQUET)"
                )
                lines.append(f"{out_path} ({count} rows)")
            return lines
        finally:
            connection.close()


def _reader(table: Table, csv_path: Path) -> str:
    columns = ", ".join(f"'{c.name}': '{_DUCKDB_TYPES[c.kind]}'" for c in table.columns)
    return f"read_csv('{_quoted(csv_path)}', header = true, columns = {{{columns}}})"


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


def _directory(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target}: not a directory")
    if not target.parent.is_dir():
        raise ExportError(f"{target}: directory {str(target.parent)!r} does not exist")
    target.mkdir(exist_ok=True)


def _csv_file(target: Path, table: Table, rows: Sequence[dict[str, Any]]) -> str:
    out_path = target / f"{table.name}.csv"
    with out_path.open("w", encoding="utf-8", newline="") as out:
        _write_csv(out, table, rows)
    return f"{out_path} ({len(rows)} rows)"
