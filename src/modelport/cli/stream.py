"""Stream commands: ``stream run`` (views' events into the online store), ``stream
predict`` (an endpoint answering an input stream on an output stream), ``stream
publish`` (events from JSONL onto a stream), ``stream status`` (how far a view or a
predictor is behind).

The streams are Redis Streams at ``MODELPORT_STREAM_URL`` (default: the online store's
Redis); the in-process queue is only reachable from the server's own process.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from modelport import errors
from modelport.cli.common import Ctx, emit, err, handled, out, table
from modelport.cli.deployments import EnvOption

if TYPE_CHECKING:
    from modelport.features.predictor import PredictorStats
    from modelport.features.streams import RedisStreamSource
    from modelport.settings import Settings

#: Longest wait for the online store on one batch before ``stream run`` fails.
STORE_TIMEOUT_S = 30.0

stream_app = typer.Typer(help="Event streams: feed stream views, publish events, show lag.")


def predictor_group(endpoint: str) -> str:
    """The consumer group of ``stream predict`` when none is named: one per endpoint."""
    return f"modelport.predict.{endpoint}"


@stream_app.command("run")
def stream_run(
    ctx: typer.Context,
    views: Annotated[list[str], typer.Argument(help="Stream views to feed.")],
    group: Annotated[
        str | None, typer.Option(help="Consumer group (default: modelport.VIEW).")
    ] = None,
    consumer: Annotated[
        str | None,
        typer.Option(help="Consumer name; keep it across restarts (default: host name)."),
    ] = None,
    batch: Annotated[int, typer.Option(help="Events per store call.")] = 500,
    once: Annotated[
        bool, typer.Option("--once", help="Stop when the streams are drained.")
    ] = False,
) -> None:
    """Apply the views' events to the online store until stopped.

    SIGTERM or SIGINT stops it once the current batch is applied and acknowledged.
    """
    from modelport.features.online import open_store
    from modelport.features.processor import StreamProcessor, run_all, stop_on_signals
    from modelport.features.streams import RedisStreamSource, require_url

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    c: Ctx = ctx.obj
    with handled():
        url = require_url(c.settings.online_store, c.settings.stream_url)
        specs = _stream_views(c, views, group)
        if c.settings.online_store == "memory":
            err.print("warning: the memory online store is gone when this command ends")
        # a batch is not a prediction: it may take longer than a prediction's budget
        timeout = max(c.settings.feature_timeout_seconds, STORE_TIMEOUT_S)
        store = open_store(c.settings.model_copy(update={"feature_timeout_seconds": timeout}))
        name = consumer or socket.gethostname()
        processors = [
            StreamProcessor(view, RedisStreamSource(url, stream, g, name), store, batch_size=batch)
            for view, stream, g in specs
        ]
        try:
            with stop_on_signals(processors):
                stats = run_all(processors, once=once)
        finally:
            for p in processors:
                p.source.close()
            store.close()
    data = {p.view.name: asdict(s) for p, s in zip(processors, stats, strict=True)}
    columns = ["view", *next(iter(data.values()))]
    rows = [[view, *s.values()] for view, s in data.items()]
    emit(c, data, lambda: out.print(table("stream run", columns, rows)))


def _stream_views(c: Ctx, names: list[str], group: str | None) -> list[tuple[Any, str, str]]:
    """(view, stream, group) for each named view; a clear error for one that is not a
    stream view, or two on one stream sharing a named group."""
    from modelport.features.processor import stream_view
    from modelport.features.streams import default_group
    from modelport.registry.features import FeatureViewStore

    registry = FeatureViewStore(c.client.registry.engine)
    specs = []
    for name in dict.fromkeys(names):
        view = registry.get(name)
        specs.append((view, stream_view(view).stream, group or default_group(name)))
    pairs = [(stream, g) for _, stream, g in specs]
    if len(set(pairs)) != len(pairs):
        raise errors.InvalidInput(
            f"views on one stream cannot share the group {group!r}: each would see only "
            "part of the events",
            hint="leave --group out (one group per view) or run them separately",
        )
    return specs


@stream_app.command("predict")
def stream_predict(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint that answers the events.")],
    input: Annotated[str, typer.Option("--input", help="Stream of events to predict.")],
    output: Annotated[str, typer.Option("--output", help="Stream the predictions go to.")],
    env: EnvOption = "production",
    group: Annotated[
        str | None, typer.Option(help="Consumer group (default: modelport.predict.ENDPOINT).")
    ] = None,
    consumer: Annotated[
        str | None,
        typer.Option(help="Consumer name; keep it across restarts (default: host name)."),
    ] = None,
    batch: Annotated[int, typer.Option(help="Events per prediction request.")] = 200,
    once: Annotated[
        bool, typer.Option("--once", help="Stop when the input stream is drained.")
    ] = False,
) -> None:
    """Predict each event of INPUT with ENDPOINT and publish the answers on OUTPUT.

    Per batch: the endpoint's stream views that read INPUT are updated, the batch is
    predicted as one request (batch and streaming features joined), one answer per event
    (or its error) is published, then the batch is acknowledged: at least once, so a
    reader of OUTPUT dedupes by ``event_id``. Predictions go to the prediction log.
    SIGTERM or SIGINT stops it once the current batch is answered and acknowledged.
    """
    import asyncio

    from modelport.features.streams import RedisStreamSource, require_url

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    c: Ctx = ctx.obj
    settings = c.settings.model_copy(update={"env": env})
    with handled():
        url = require_url(settings.online_store, settings.stream_url)
        if settings.online_store == "memory":
            err.print("warning: the memory online store is gone when this command ends")
        source = RedisStreamSource(
            url, input, group or predictor_group(endpoint), consumer or socket.gethostname()
        )
        try:
            stats = asyncio.run(_predict(settings, endpoint, source, url, output, batch, once))
        finally:
            source.close()
    data = {"endpoint": endpoint, "input": input, "output": output, **asdict(stats)}
    columns = list(data)
    emit(c, data, lambda: out.print(table("stream predict", columns, [list(data.values())])))


async def _predict(
    settings: Settings,
    endpoint: str,
    source: RedisStreamSource,
    url: str,
    output: str,
    batch: int,
    once: bool,
) -> PredictorStats:
    """Start a data plane (and its prediction log) for ``settings.env``, answer the
    stream until stopped or drained, stop it all."""
    import asyncio

    from modelport.client import Client
    from modelport.features.online import open_store
    from modelport.features.predictor import StreamPredictor
    from modelport.features.processor import stop_on_signals
    from modelport.monitoring.logwriter import PredictionLog
    from modelport.serving.dataplane import DataPlane

    client = Client(settings)
    log = PredictionLog(settings, settings.env) if settings.log_sample_rate > 0 else None
    plane = DataPlane(settings, client.registry, client.artifacts, prediction_log=log)
    # a batch is not a prediction: its apply may take longer than a feature read's budget
    store = None  # the memory store must be the plane's own
    if settings.online_store != "memory":
        timeout = max(settings.feature_timeout_seconds, STORE_TIMEOUT_S)
        store = open_store(settings.model_copy(update={"feature_timeout_seconds": timeout}))
    predictor: StreamPredictor | None = None
    if log is not None:
        log.start()
    try:
        await plane.start()
        predictor = StreamPredictor(
            plane,
            endpoint,
            source,
            output_url=url,
            output_stream=output,
            store=store,
            batch_size=batch,
        )
        with stop_on_signals([predictor]):
            return await predictor.run(once=once)
    finally:
        if predictor is not None:
            predictor.close()
        try:
            await plane.stop()
        finally:
            if store is not None:
                store.close()
            if log is not None:
                await asyncio.to_thread(log.close)
            client.close()


@stream_app.command("publish")
def stream_publish(
    ctx: typer.Context,
    stream: Annotated[str, typer.Argument(help="Stream to add the events to.")],
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="JSON Lines, one event object a line (default: stdin)."),
    ] = None,
) -> None:
    """Add events (JSON objects, one a line) to STREAM, in order."""
    from modelport.features.streams import publish_many, require_url

    c: Ctx = ctx.obj
    with handled():
        url = require_url(c.settings.online_store, c.settings.stream_url)
        if file is not None and not file.exists():
            raise errors.InvalidInput(f"event file {file} does not exist")
        with file.open() if file is not None else nullcontext(sys.stdin) as lines:
            added = publish_many(url, stream, _events(lines, str(file or "stdin")))
    emit(c, {"stream": stream, "published": added}, lambda: out.print(f"{added} events → {stream}"))


def _events(lines: IO[str], where: str) -> Iterator[dict[str, Any]]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise errors.InvalidInput(f"{where} line {n} is not JSON: {exc}") from None
        if not isinstance(event, dict):
            raise errors.InvalidInput(f"{where} line {n} is not a JSON object")
        yield event


@stream_app.command("status")
def stream_status(
    ctx: typer.Context,
    view: Annotated[str | None, typer.Argument(help="Stream view.")] = None,
    group: Annotated[
        str | None,
        typer.Option(
            help="Consumer group (default: modelport.VIEW or modelport.predict.ENDPOINT)."
        ),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="A `stream predict` endpoint instead of a view.")
    ] = None,
    input: Annotated[
        str | None, typer.Option("--input", help="The predictor's input stream.")
    ] = None,
) -> None:
    """How far VIEW's consumer group (or, with --endpoint and --input, a predictor's) is
    behind its stream: lag and pending."""
    from modelport.features.streams import group_backlog, require_url

    c: Ctx = ctx.obj
    with handled():
        url = require_url(c.settings.online_store, c.settings.stream_url)
        data: dict[str, Any]
        if endpoint is not None:
            if input is None or view is not None:
                raise errors.InvalidInput(
                    "a predictor's status needs --endpoint and --input, and no view",
                    hint="modelport stream status --endpoint fraud --input transactions",
                )
            stream, g = input, group or predictor_group(endpoint)
            data = {"endpoint": endpoint}
        elif view is not None:
            ((_, stream, g),) = _stream_views(c, [view], group)
            data = {"view": view}
        else:
            raise errors.InvalidInput(
                "name a stream view, or a predictor with --endpoint and --input"
            )
        backlog = group_backlog(url, stream, g)
    data |= {"stream": stream, "group": g, "started": False}
    if backlog is not None:
        data |= {"started": True, **asdict(backlog)}
    columns = list(data)
    emit(c, data, lambda: out.print(table(f"stream {stream}", columns, [list(data.values())])))
