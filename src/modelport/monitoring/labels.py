"""Delayed labels: ground truth attached to prediction ids, and performance from them.

Labels arrive minutes or weeks after the prediction, through the HTTP API, the CLI,
the Python API or a bulk CSV/Parquet import. Each call writes one Parquet segment
(written to ``.tmp``, flushed to disk, renamed) under::

    {logs}/labels/date={YYYY-MM-DD}/{host}-{pid}-{uuid12}.parquet

so a label is durable once the call returns, and readers never see half a file. A
bulk import publishes its segments only after the whole file has been read: a bad row
leaves nothing behind. Labels are kept as canonical text (`label_text`) and, when they
are numbers, as ``label_value`` for regressors. The latest label of an id wins.

`LabelStore.performance` joins the prediction log with the labels in DuckDB, per
model version (and time bucket), and computes the metrics of
`modelport.monitoring.performance` with the version's task and classes.

Example::

    store = LabelStore(settings)
    store.add(["9f3c...-0"], [1])
    store.performance("fraud", since=datetime.now(UTC) - timedelta(days=7), bucket="1d")
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import Generator, Sequence
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelport.durations import parse_duration
from modelport.errors import InvalidInput, NotFound
from modelport.monitoring.performance import (
    Metrics,
    classification_metrics,
    regression_metrics,
)
from modelport.monitoring.records import LABEL_SCHEMA, label_text

if TYPE_CHECKING:
    import pandas as pd

    from modelport.registry import ModelVersion, Registry
    from modelport.settings import Settings

IMPORT_CHUNK_ROWS = 100_000
MAX_ID_LENGTH = 256
_OPTIONS = "hive_partitioning=true, union_by_name=true"
_READ = f"read_parquet(?, {_OPTIONS})"
_LATEST = "QUALIFY row_number() OVER (PARTITION BY prediction_id ORDER BY ts DESC) = 1"


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """A point in time from an ISO 8601 timestamp or a duration ago (``7d``, ``12h``).

    Naive timestamps are taken as UTC.
    """
    now = now or datetime.now(UTC)
    try:
        return now - timedelta(seconds=parse_duration(text))
    except InvalidInput:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"{text!r} is neither a duration nor a timestamp",
            hint="write a duration back from now (7d, 12h) or an ISO time (2024-05-01T00:00)",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def label_value(value: Any) -> float | None:
    """The label as a number, for regressors; None when it is not one."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class LabelStore:
    """Labels in Parquet segments beside the prediction log; performance from both.

    ``registry`` gives each version's task and classes; without one, a registry is
    opened from ``settings`` when first needed.
    """

    def __init__(self, settings: Settings, *, registry: Registry | None = None) -> None:
        self.settings = settings
        self._registry = registry
        self._own_registry = False

    @property
    def root(self) -> Path:
        return self.settings.logs_path / "labels"

    @property
    def predictions(self) -> Path:
        return self.settings.logs_path / "predictions"

    def close(self) -> None:
        if self._own_registry and self._registry is not None:
            self._registry.close()
            self._registry = None

    # -- writing ---------------------------------------------------------------------------

    def add(
        self, prediction_ids: Sequence[str], labels: Sequence[Any], *, source: str = "api"
    ) -> int:
        """Attach ``labels[i]`` to ``prediction_ids[i]``; durable when it returns.

        Returns the number of labels written (the last of a repeated id counts once).
        """
        segment = self._stage(prediction_ids, labels, source, first_row=0)
        if segment is None:
            return 0
        path, rows = segment
        self._publish([path])
        return rows

    def import_file(
        self,
        path: str | Path,
        *,
        id_column: str = "prediction_id",
        label_column: str = "label",
    ) -> int:
        """Import labels from a CSV or Parquet file, read in chunks; all or nothing."""
        path = Path(path)
        if not path.is_file():
            raise InvalidInput(f"label file {path} does not exist", hint="check the path")
        staged: list[Path] = []
        total, first_row = 0, 0
        try:
            with closing(_chunks(path, id_column, label_column)) as chunks:
                for ids, labels in chunks:
                    segment = self._stage(ids, labels, f"import:{path.name}", first_row, path)
                    first_row += len(ids)
                    if segment is not None:
                        staged.append(segment[0])
                        total += segment[1]
        except BaseException:
            for tmp in staged:
                tmp.unlink(missing_ok=True)
            raise
        self._publish(staged)
        return total

    def _stage(
        self,
        prediction_ids: Sequence[str],
        labels: Sequence[Any],
        source: str,
        first_row: int,
        origin: Path | None = None,
    ) -> tuple[Path, int] | None:
        """Check one batch and write it to a ``.tmp`` segment, flushed to disk."""
        if len(prediction_ids) != len(labels):
            raise InvalidInput(
                f"{len(prediction_ids)} prediction ids but {len(labels)} labels",
                hint="give exactly one label per prediction id",
            )
        latest: dict[str, Any] = {}
        for i, (pid, label) in enumerate(zip(prediction_ids, labels, strict=True)):
            _check(pid, label, first_row + i, origin)
            latest[pid] = label
        if not latest:
            return None
        now = datetime.now(UTC)
        table = pa.table(
            {
                "prediction_id": list(latest),
                "label": [label_text(v) for v in latest.values()],
                "label_value": [label_value(v) for v in latest.values()],
                "ts": [now] * len(latest),
                "source": [source] * len(latest),
            },
            schema=LABEL_SCHEMA,
        )
        folder = self.root / f"date={now:%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = folder / (name + ".tmp")
        with tmp.open("wb") as out:
            pq.write_table(table, out)
            out.flush()
            os.fsync(out.fileno())
        return tmp, table.num_rows

    def _publish(self, staged: list[Path]) -> None:
        folders = set()
        for tmp in staged:
            os.replace(tmp, tmp.with_suffix(""))
            folders.add(tmp.parent)
        for folder in folders:
            _fsync_dir(folder)

    # -- reading ---------------------------------------------------------------------------

    def latest(self) -> pd.DataFrame:
        """Every labelled id with its latest label (columns of the label layout)."""
        import duckdb
        import pandas as pd

        if not _has_files(self.root):
            return pd.DataFrame(columns=LABEL_SCHEMA.names)
        with duckdb.connect() as con:
            return con.execute(
                f"SELECT prediction_id, label, label_value, ts, source FROM {_READ} {_LATEST}",
                [_glob(self.root)],
            ).df()

    def performance(
        self,
        endpoint: str,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        bucket: str | None = None,
    ) -> list[dict[str, Any]]:
        """Metrics of each model version ``endpoint`` served, from its labelled predictions.

        Predictions are those answered (status ok) between ``since`` and ``until``; with
        ``bucket`` (a duration such as ``1d``) they are also grouped by when they were
        answered, buckets aligned to the Unix epoch (UTC midnight for days). Each row:
        endpoint, model, version, bucket (ISO start, or None), task, n_labelled and the
        task's metrics (None where they cannot be computed).
        """
        step = _bucket_micros(bucket)
        folder = self.predictions / f"endpoint={endpoint}"
        if not _has_files(folder) or not _has_files(self.root):
            return []
        frame = self._joined(folder, since, until, step)
        rows: list[dict[str, Any]] = []
        for (model, version, start), group in frame.groupby(
            ["model", "version", "bucket"], sort=True, dropna=False
        ):
            mv = self._version(str(model), int(version))
            task = _task(mv, group)
            row: dict[str, Any] = {
                "endpoint": endpoint,
                "model": str(model),
                "version": int(version),
                "bucket": _bucket_start(start) if step else None,
                "task": task,
            }
            metrics = _metrics(task, group, mv)
            row["n_labelled"] = metrics.pop("n", len(group))
            rows.append(row | metrics)
        return rows

    def _joined(
        self, folder: Path, since: datetime | None, until: datetime | None, step: int | None
    ) -> pd.DataFrame:
        """Labelled, answered predictions: model, version, bucket, label and outputs."""
        from modelport.monitoring.logstore import reread  # DuckDB, only where it is read

        return reread(self._read_joined)(folder, since, until, step)

    def _read_joined(
        self, folder: Path, since: datetime | None, until: datetime | None, step: int | None
    ) -> pd.DataFrame:
        import duckdb

        with duckdb.connect() as con:
            columns = {
                str(r[0])
                for r in con.execute(f"DESCRIBE SELECT * FROM {_READ}", [_glob(folder)]).fetchall()
            }
            wanted = [
                c for c in ("out_label", "out_probabilities", "out_prediction") if c in columns
            ]
            bucket = f"(epoch_us(p.ts) // {step}) * {step}" if step else "0"
            where = ["p.status = 'ok'", "p.model IS NOT NULL", "p.version IS NOT NULL"]
            params: dict[str, Any] = {"labels": _glob(self.root), "predictions": _glob(folder)}
            if since is not None:
                where.append("p.ts >= $since")
                params["since"] = _utc(since)
            if until is not None:
                where.append("p.ts < $until")
                params["until"] = _utc(until)
            outputs = "".join(f", p.{c}" for c in wanted)
            sql = (
                "WITH l AS (SELECT prediction_id, label, label_value FROM "
                f"read_parquet($labels, {_OPTIONS}) {_LATEST}) "
                f"SELECT p.model, p.version, {bucket} AS bucket, l.label, l.label_value"
                f"{outputs} FROM read_parquet($predictions, {_OPTIONS}) p "
                f"JOIN l USING (prediction_id) WHERE {' AND '.join(where)}"
            )
            return con.execute(sql, params).df()

    def _version(self, model: str, version: int) -> ModelVersion | None:
        if self._registry is None:
            from modelport.registry import Registry

            self._registry = Registry(self.settings.database_url)
            self._own_registry = True
        try:
            return self._registry.get_version(model, version)
        except NotFound:
            return None


def _metrics(task: str, group: pd.DataFrame, mv: ModelVersion | None) -> Metrics:
    if task == "regression" and "out_prediction" in group.columns:
        return regression_metrics(
            group["label_value"].to_numpy(dtype=np.float64, na_value=np.nan),
            group["out_prediction"].to_numpy(dtype=np.float64, na_value=np.nan),
        )
    if task != "classification" or "out_label" not in group.columns:
        return {"n": len(group)}
    classes = [label_text(c) for c in mv.classes] if mv and mv.classes else None
    predicted = [label_text(v) for v in group["out_label"]]
    return classification_metrics(
        group["label"].to_numpy(dtype=object),
        predicted,
        _probabilities(group, classes),
        classes,
    )


def _probabilities(group: pd.DataFrame, classes: list[str] | None) -> np.ndarray | None:
    """The logged probabilities as a matrix, when every row has them in class order."""
    if classes is None or "out_probabilities" not in group.columns:
        return None
    rows = group["out_probabilities"].tolist()
    if any(r is None or len(r) != len(classes) for r in rows):
        return None
    return np.asarray([np.asarray(r, dtype=np.float64) for r in rows]).reshape(
        len(rows), len(classes)
    )


def _task(mv: ModelVersion | None, group: pd.DataFrame) -> str:
    """The version's task; the logged outputs tell when the version is gone."""
    if mv is not None and mv.task in ("classification", "regression"):
        return mv.task
    if "out_label" in group.columns and group["out_label"].notna().any():
        return "classification"
    if "out_prediction" in group.columns and group["out_prediction"].notna().any():
        return "regression"
    return mv.task if mv is not None else "other"


def _chunks(
    path: Path, id_column: str, label_column: str
) -> Generator[tuple[list[Any], list[Any]], None, None]:
    """(ids, labels) of a CSV or Parquet file, ``IMPORT_CHUNK_ROWS`` at a time."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:
            raise InvalidInput(f"could not read {path.name} as Parquet: {exc}") from exc
        with parquet:
            _require(path, parquet.schema_arrow.names, id_column, label_column)
            columns = [id_column, label_column]
            for batch in parquet.iter_batches(IMPORT_CHUNK_ROWS, columns=columns):
                yield _ids(batch.column(0).to_pylist()), batch.column(1).to_pylist()
        return
    if suffix not in (".csv", ".tsv", ".txt"):
        raise InvalidInput(
            f"{path.name}: labels are imported from CSV or Parquet files",
            hint="give a .csv or .parquet file",
        )
    import pandas as pd

    sep = "\t" if suffix == ".tsv" else ","
    try:
        header = pd.read_csv(path, sep=sep, nrows=0).columns
        _require(path, [str(c) for c in header], id_column, label_column)
        with pd.read_csv(
            path,
            sep=sep,
            usecols=[id_column, label_column],
            dtype={id_column: str},
            chunksize=IMPORT_CHUNK_ROWS,
            keep_default_na=False,
            na_values=[""],
        ) as reader:
            for chunk in reader:
                labels = chunk[label_column].astype(object)
                yield _ids(chunk[id_column].tolist()), labels.where(labels.notna(), None).tolist()
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InvalidInput(f"could not read {path.name} as CSV: {exc}") from exc


def _require(path: Path, names: Sequence[str], *columns: str) -> None:
    for column in columns:
        if column not in names:
            option = "--id-column" if column == columns[0] else "--label-column"
            raise InvalidInput(
                f"{path.name} has no column {column!r} (its columns: {', '.join(names)})",
                hint=f"name the column that holds it with {option}",
            )


def _ids(values: list[Any]) -> list[Any]:
    """Ids as text; missing ones stay None so `_check` names their row."""
    return [
        None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values
    ]


def _check(pid: Any, label: Any, row: int, origin: Path | None) -> None:
    where = f"{origin.name}, row {row + 1}" if origin else f"item {row}"
    if not isinstance(pid, str) or not pid.strip():
        raise InvalidInput(
            f"{where}: prediction_id must be a non-empty string, not {pid!r}",
            hint="use the prediction_ids a predict response returned",
        )
    if len(pid) > MAX_ID_LENGTH:
        raise InvalidInput(f"{where}: prediction_id is longer than {MAX_ID_LENGTH} characters")
    if label is None or (isinstance(label, float) and math.isnan(label)):
        raise InvalidInput(
            f"{where}: the label of {pid!r} is missing",
            hint="give every prediction id a label (leave out ids without one)",
        )
    if isinstance(label, list | dict | tuple):
        raise InvalidInput(
            f"{where}: the label of {pid!r} is a {type(label).__name__}",
            hint="a label is one value: a class (text, number or boolean) or a number",
        )


def _bucket_micros(bucket: str | None) -> int | None:
    if bucket is None:
        return None
    seconds = parse_duration(bucket)
    if seconds < 1:
        raise InvalidInput(f"bucket {bucket!r} is under a second", hint="e.g. 1h or 1d")
    return int(seconds * 1_000_000)


def _bucket_start(micros: Any) -> str:
    return datetime.fromtimestamp(int(micros) / 1_000_000, UTC).isoformat()


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _glob(folder: Path) -> str:
    return str(folder / "*" / "*.parquet")


def _has_files(folder: Path) -> bool:
    return any(folder.glob("*/*.parquet"))


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
