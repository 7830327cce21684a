"""The app factory: one ASGI app with the data plane, the Open Inference Protocol and
the control API, sharing one `Settings`, `Client` and `DataPlane`.

The prediction log (`modelport.monitoring.logwriter`) is on unless
``log_sample_rate`` is 0; its writer thread starts and stops with the app, and so
does the watch loop (`modelport.serving.watcher`: monitor, alerts, rollouts, batch
schedule) unless ``watch_in_server`` is off (a multi-worker server runs it in a process
of its own, `modelport.serving.supervisor`).

Example::

    app = create_app(Settings(env="staging"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelport import __version__
from modelport.client import Client
from modelport.errors import ModelportError
from modelport.monitoring.logwriter import PredictionLog
from modelport.serving import http
from modelport.serving.auth import protect
from modelport.serving.dataplane import DataPlane
from modelport.serving.fastpath import ASGIApp, FastPath
from modelport.serving.metrics import ServingMetrics
from modelport.serving.routes import batch as batch_routes
from modelport.serving.routes import compare, control, feedback, native, rollouts, v2, watch
from modelport.serving.routes import features as feature_routes
from modelport.serving.routes import keys as key_routes
from modelport.serving.routes import logs as log_routes
from modelport.serving.routes import monitor_history as history_routes
from modelport.serving.routes import precomputed as precomputed_routes
from modelport.serving.routes import stats as stats_routes
from modelport.serving.routes import ui as ui_routes
from modelport.serving.state import AppState
from modelport.serving.watcher import Watcher
from modelport.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    client: Client | None = None,
    with_plane: Callable[[DataPlane], None] | None = None,
) -> ASGIApp:
    """Build the server for ``settings.env``; models load when the app starts.

    The result is the FastAPI app wrapped in the fast path, which answers predict
    routes without FastAPI's per-request machinery, and, when auth is on, that behind
    the API key check (`modelport.serving.auth`). ``with_plane`` is called with the
    data plane once built (the server marks it draining on SIGTERM).
    """
    settings = settings or Settings()
    client = client or Client(settings)
    metrics = ServingMetrics()
    prediction_log = (
        PredictionLog(settings, settings.env, observer=metrics.log_observer())
        if settings.log_sample_rate > 0
        else None
    )
    plane = DataPlane(
        settings,
        client.registry,
        client.artifacts,
        batch_observer=metrics.batch_observer,
        prediction_log=prediction_log,
    )
    plane.pool.observer = metrics.pool_observer()
    plane.breaker_observer = metrics.breaker_observer()
    if plane.registry.breaker is not None:
        plane.registry.breaker.observer = plane.breaker_observer
    if with_plane is not None:
        with_plane(plane)
    if plane.shadows is not None:
        plane.shadows.observer = metrics.shadow_observer()
    watcher = Watcher(client, metrics=metrics) if settings.watch_in_server else None

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if prediction_log is not None:
            prediction_log.start()
        publisher = asyncio.get_running_loop().create_task(metrics.publish_every())
        try:
            await plane.start()
            if watcher is not None:
                watcher.start()
            yield
        finally:
            publisher.cancel()
            try:
                if watcher is not None:
                    await watcher.stop()
                await plane.stop()
            finally:
                metrics.publish()  # the last requests' counts, before the process ends
                if prediction_log is not None:
                    await asyncio.to_thread(prediction_log.close)

    app = FastAPI(
        title="Modelport",
        version=__version__,
        description="Model serving: native predict API, Open Inference Protocol V2, control API.",
        lifespan=lifespan,
    )
    app.state.modelport = AppState(
        settings=settings,
        client=client,
        plane=plane,
        lazy_labels=True,
    )
    app.add_exception_handler(ModelportError, http.modelport_error_handler)
    app.add_exception_handler(StarletteHTTPException, http.http_error_handler)
    app.add_exception_handler(RequestValidationError, http.validation_error_handler)
    app.add_exception_handler(Exception, http.internal_error_handler)
    app.include_router(native.router)
    app.include_router(v2.router)
    app.include_router(v2.health)
    app.include_router(control.router)
    app.include_router(feedback.router)
    app.include_router(watch.router)
    app.include_router(history_routes.router)
    app.include_router(compare.router)
    app.include_router(rollouts.router)
    app.include_router(feature_routes.router)
    app.include_router(precomputed_routes.router)
    app.include_router(batch_routes.router)
    app.include_router(stats_routes.router)
    app.include_router(log_routes.router)
    app.include_router(ui_routes.router)
    app.include_router(key_routes.router)

    @app.get("/metrics", tags=["metrics"], response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus exposition, summed over every worker process."""
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return protect(FastPath(app, plane, settings.max_body_bytes, metrics), settings, client)
