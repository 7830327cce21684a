"""Replay: send logged live requests to another environment's deployment and compare.

`replay` reads the answered live requests (not shadow, status ok) of an endpoint that
the environment ``source`` logged in a window, sends their inputs to what ``target``
deploys for that endpoint, and compares the answers with the logged ones
(`modelport.monitoring.comparison.compare_frames`): whether a staged version answers
as production does, before any live traffic reaches it.

The target answers in process by default (its primary version loaded as the target
serves it, native or compiled), or through a running server at ``url``
(``POST {url}/v1/endpoints/{endpoint}/predict``); either way in batches of
``batch_rows`` rows. A batch's time is not a request's latency, so the comparison's
candidate latency is left out (None) and the report gives the batches' times and the
throughput instead.

Example::

    report = replay(client, "fraud", source="production", target="staging", window="1h")
    report.comparison.disagreement, report.to_dict()
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from modelport.client import frame_columns
from modelport.durations import format_duration, parse_duration
from modelport.errors import (
    InvalidInput,
    ModelportError,
    NotFound,
    SignatureMismatch,
    Unavailable,
)
from modelport.monitoring.comparison import (
    OUTPUT_COLUMNS,
    Comparison,
    compare_frames,
    fetch_frame,
    live_condition,
    logged_source,
    present_columns,
)
from modelport.monitoring.logstore import LogStore, quote
from modelport.monitoring.records import OK, input_column, output_column
from modelport.runtimes.base import Prediction, prediction_failed
from modelport.runtimes.loading import load_runtime, runtime_kind
from modelport.safepaths import check_url
from modelport.signature import Columns, Table

if TYPE_CHECKING:
    import httpx
    import pandas as pd

    from modelport.client import Client
    from modelport.registry import Deployment, ModelVersion

#: Rows per call to the target.
BATCH_ROWS = 256
#: Most rows one replay may read.
MAX_ROWS = 1_000_000
HTTP_TIMEOUT_S = 60.0


class HttpSession(Protocol):
    """What a replay over HTTP needs of a client (an ``httpx.Client``, a test client)."""

    def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> Any: ...


@dataclass(frozen=True)
class ReplayReport:
    """What a replay sent where, and how the answers compare."""

    endpoint: str
    source: str
    target: str
    #: the versions that answered the logged requests (``models:/fraud/3``, ...)
    source_versions: tuple[str, ...]
    #: the version that answered the replay
    target_version: str
    rows: int
    requests: int
    since: dt.datetime
    until: dt.datetime
    url: str | None
    batches: int
    batch_p50_s: float | None
    batch_p99_s: float | None
    rows_per_s: float | None
    comparison: Comparison

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "source": self.source,
            "target": self.target,
            "source_versions": list(self.source_versions),
            "target_version": self.target_version,
            "rows": self.rows,
            "requests": self.requests,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "url": self.url,
            "batches": self.batches,
            "batch_p50_s": self.batch_p50_s,
            "batch_p99_s": self.batch_p99_s,
            "rows_per_s": self.rows_per_s,
            "comparison": self.comparison.to_dict(),
        }


def replay(
    client: Client,
    endpoint: str,
    *,
    source: str = "production",
    target: str = "staging",
    window: str | float = "1h",
    limit: int = 10_000,
    url: str | None = None,
    batch_rows: int = BATCH_ROWS,
    http: HttpSession | None = None,
    api_key: str | None = None,
) -> ReplayReport:
    """Replay the last ``limit`` answered requests ``source`` logged for ``endpoint`` in
    the last ``window`` (``1h``, or seconds) against ``target``'s deployment.

    ``url``: send them to the server there instead of predicting in process (``http``:
    the HTTP client to use, e.g. a test client; ``api_key``: the key sent to a server
    that asks for one, a predict key for the endpoint). Raises `NotFound` when ``target`` does
    not deploy the endpoint or nothing was logged in the window, `SignatureMismatch`
    naming the column when the target's signature rejects the logged inputs.
    """
    if url is not None and http is None:
        # Link-local and metadata addresses are never replayed to; loopback is the
        # usual target of a replay from the command line.
        check_url(url, allow_private=True, what="replay URL")
    seconds = parse_duration(window)
    if not 0 < limit <= MAX_ROWS:
        raise InvalidInput(f"limit must be 1..{MAX_ROWS} rows, not {limit}")
    if batch_rows < 1:
        raise InvalidInput(f"batch_rows must be at least 1, not {batch_rows}")
    deployment = _deployment(client, endpoint, target)
    primary = deployment.spec.primary
    version = client.registry.get_version(primary.model, primary.version)
    until = dt.datetime.now(dt.UTC)
    since = until - dt.timedelta(seconds=seconds)
    logged = _logged(client, endpoint, version, source, since, until, limit)
    if logged.empty:
        raise NotFound(
            f"no answered requests of {endpoint!r} were logged in {source} in the last "
            f"{format_duration(seconds)}",
            hint=f"check what was logged: modelport logs tail {endpoint}; or widen --window "
            "(is the prediction log on, MODELPORT_LOG_SAMPLE_RATE above 0?)",
        )
    columns = _inputs(version, logged, endpoint, target)
    if url is None:
        outputs, times = _in_process(client, deployment, version, columns, batch_rows)
        answered_by = version.uri
    else:
        outputs, times, answered_by = _over_http(
            url, endpoint, version, logged, batch_rows, http, api_key
        )
    live = logged[[c for c in ["latency_s", *OUTPUT_COLUMNS] if c in logged.columns]]
    candidate = _outputs_frame(outputs, len(logged))
    batch_times = np.asarray(times, dtype=np.float64)
    total = float(batch_times.sum())
    versions = logged[["model", "version"]].drop_duplicates().itertuples(index=False)
    return ReplayReport(
        endpoint=endpoint,
        source=source,
        target=target,
        source_versions=tuple(sorted(f"models:/{m}/{int(v)}" for m, v in versions)),
        target_version=answered_by,
        rows=len(logged),
        requests=int(logged["request_id"].nunique()),
        since=since,
        until=until,
        url=url,
        batches=len(times),
        batch_p50_s=float(np.quantile(batch_times, 0.5)),
        batch_p99_s=float(np.quantile(batch_times, 0.99)),
        rows_per_s=len(logged) / total if total > 0 else None,
        comparison=compare_frames(live, candidate),
    )


def _deployment(client: Client, endpoint: str, target: str) -> Deployment:
    try:
        return client.get_deployment(endpoint, env=target)
    except NotFound:
        raise NotFound(
            f"endpoint {endpoint!r} is not deployed in {target}, so there is nothing to "
            "replay against",
            hint=f"deploy the candidate there first: modelport deploy {endpoint} "
            f"models:/NAME/VERSION --env {target}",
        ) from None


def _logged(
    client: Client,
    endpoint: str,
    version: ModelVersion,
    source: str,
    since: dt.datetime,
    until: dt.datetime,
    limit: int,
) -> pd.DataFrame:
    """The newest ``limit`` answered live rows: ids, model, version, latency, the
    target's inputs (as ``in_*``, those logged) and the outputs a comparison reads."""
    import duckdb

    sql_source = logged_source(LogStore(client.settings), endpoint, since, until)
    with duckdb.connect() as con:
        present = present_columns(con, sql_source)
        wanted = ["request_id", "model", "version", "latency_s"]
        wanted += [input_column(c) for c in version.signature.column_names]
        wanted += list(OUTPUT_COLUMNS)
        picked = ", ".join(quote(c) for c in dict.fromkeys(wanted) if c in present)
        sql = (
            f"SELECT {picked} FROM ({sql_source}) WHERE environment = $source "
            f"AND {live_condition(present)} AND status = $ok "
            "AND ts >= $since AND ts < $until ORDER BY ts DESC, prediction_id LIMIT $limit"
        )
        params = {"source": source, "ok": OK, "since": since, "until": until, "limit": limit}
        return fetch_frame(con, sql, params)


def _inputs(version: ModelVersion, logged: pd.DataFrame, endpoint: str, target: str) -> Columns:
    """The logged inputs checked against the target's signature, as a request's are."""
    names = version.signature.column_names
    absent = [n for n in names if input_column(n) not in logged.columns]
    where = f"the {target} deployment of {endpoint!r} ({version.uri})"
    if absent:
        raise SignatureMismatch(
            f"{where} takes the input column(s) {absent}, which the logged requests do not have",
            hint="replay against a version with the same inputs, or log those columns",
        )
    frame = logged[[input_column(n) for n in names]].set_axis(names, axis=1)
    try:
        return frame_columns(version.signature, frame)
    except SignatureMismatch as exc:
        raise SignatureMismatch(
            f"{where} rejects the logged inputs: {exc.message}", hint=exc.hint
        ) from None


def _in_process(
    client: Client,
    deployment: Deployment,
    version: ModelVersion,
    columns: Columns,
    batch_rows: int,
) -> tuple[list[dict[str, np.ndarray]], list[float]]:
    """Predict every batch with the version loaded as the target serves it."""
    kind = runtime_kind(version, deployment.spec.serving.runtime)
    runtime = load_runtime(
        version, client.artifacts, kind=kind, threads=client.settings.runtime_threads
    )
    outputs: list[dict[str, np.ndarray]] = []
    times: list[float] = []
    try:
        for batch in _batches(columns, batch_rows):
            started = time.perf_counter()
            prediction = _predict(runtime, batch)
            times.append(time.perf_counter() - started)
            outputs.append(prediction.outputs)
    finally:
        runtime.unload()
    return outputs, times


def _predict(runtime: Any, columns: Columns) -> Prediction:
    try:
        prediction: Prediction = runtime.predict(columns)
    except ModelportError:
        raise
    except Exception as exc:
        raise prediction_failed(exc) from exc
    return prediction


def _batches(columns: Columns, size: int) -> Iterator[Columns]:
    rows = len(next(iter(columns.values())))
    for start in range(0, rows, size):
        stop = start + size
        if isinstance(columns, Table):
            yield Table(list(columns), columns.matrix[start:stop])
        else:
            yield {name: values[start:stop] for name, values in columns.items()}


#: Response fields that are not outputs.
_META = frozenset({"predictions", "classes", "model", "version", "endpoint", "variant"})


def _over_http(
    url: str,
    endpoint: str,
    version: ModelVersion,
    logged: pd.DataFrame,
    batch_rows: int,
    http: HttpSession | None,
    api_key: str | None = None,
) -> tuple[list[dict[str, np.ndarray]], list[float], str]:
    """POST every batch as ``dataframe_split`` JSON to the server at ``url``."""
    import httpx
    import orjson

    names = version.signature.column_names
    frame = logged[[input_column(n) for n in names]]
    primary = version.signature.outputs[0].name if version.signature.outputs else None
    address = f"{url.rstrip('/')}/v1/endpoints/{endpoint}/predict"
    headers = {"content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    own: httpx.Client | None = None
    if http is None:
        http = own = httpx.Client(timeout=HTTP_TIMEOUT_S)
    outputs: list[dict[str, np.ndarray]] = []
    times: list[float] = []
    answered_by = ""
    try:
        for start in range(0, len(frame), batch_rows):
            rows = frame.iloc[start : start + batch_rows].to_numpy(dtype=object).tolist()
            body = orjson.dumps(
                {"dataframe_split": {"columns": names, "data": rows}},
                option=orjson.OPT_SERIALIZE_NUMPY,
            )
            started = time.perf_counter()
            try:
                response = http.post(address, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise Unavailable(
                    f"could not reach {address}: {exc}",
                    hint="check --url, or start the server: modelport serve --env ENV",
                ) from None
            times.append(time.perf_counter() - started)
            answer = _answer(response, address)
            name = primary or ("label" if "classes" in answer else "prediction")
            batch = {name: np.asarray(answer["predictions"])}
            batch |= {k: np.asarray(v) for k, v in answer.items() if k not in _META}
            batch.pop("prediction_ids", None)
            outputs.append(batch)
            answered_by = f"models:/{answer.get('model')}/{answer.get('version')}"
    finally:
        if own is not None:
            own.close()
    return outputs, times, answered_by


def _answer(response: Any, address: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code == 200 and isinstance(body, dict) and "predictions" in body:
        return body
    detail = body.get("error") if isinstance(body, dict) else None
    message = f"{address} answered {response.status_code}: {detail or response.text[:200]}"
    if response.status_code == 404:
        raise NotFound(message, hint="is the endpoint served there (right --url)?")
    if 400 <= response.status_code < 500:
        raise InvalidInput(message)
    raise Unavailable(message)


def _outputs_frame(batches: list[dict[str, np.ndarray]], rows: int) -> pd.DataFrame:
    """The batches' outputs as one frame of ``out_*`` columns (2-D outputs as lists)."""
    import pandas as pd

    columns: dict[str, Any] = {}
    for name in batches[0]:
        values = np.concatenate([b[name] for b in batches])
        if len(values) != rows:
            raise InvalidInput(f"the target answered {len(values)} rows for {rows} sent")
        columns[output_column(name)] = list(values) if values.ndim > 1 else values
    columns["latency_s"] = np.full(rows, np.nan)  # a batch's time is no request's latency
    return pd.DataFrame(columns)
