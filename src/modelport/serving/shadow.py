"""Shadow variants: a copy of live traffic, answered off the hot path and only logged.

After a live answer the data plane hands the request to `ShadowRunner.submit`, which
returns at once. Each shadow variant then predicts the same inputs on its own threads
(never the live requests' threads, so a slow shadow cannot hold a live one up), and its
answer goes to the prediction log under the live request's prediction ids, marked
``shadow``: the live and shadow rows of a request join on ``prediction_id``.

A shadow is shed, never waited for: when ``shadow_max_pending`` copies are already
queued or running in this process, new copies are dropped and counted. A shadow that
raises is logged as a failed shadow row; a live request never sees either.

Example::

    runner = ShadowRunner(plane, max_pending=8)
    runner.submit("fraud", state, raw, prediction_ids, live_latency_s)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelport.errors import ModelportError
from modelport.registry import ModelVersion
from modelport.runtimes.base import prediction_failed

if TYPE_CHECKING:
    from modelport.serving.dataplane import DataPlane, EndpointState, RawInput
    from modelport.signature import Columns, Signature

log = logging.getLogger(__name__)


@dataclass
class ShadowStats:
    """This process's shadow totals: answered, failed, shed."""

    answered: int = 0
    failed: int = 0
    shed: int = 0


class ShadowRunner:
    """Run an endpoint's shadow variants on copies of live requests, bounded and apart."""

    def __init__(self, plane: DataPlane, max_pending: int, threads: int = 1) -> None:
        self.plane = plane
        self.max_pending = max_pending
        self.stats = ShadowStats()
        #: called with (endpoint, variant, outcome) per shadow copy: the metrics hook
        self.observer: Callable[[str, str, str], None] | None = None
        self.threads = threads
        self._pending = 0
        #: one pool per shadow variant, so that a slow shadow does not queue a fast one
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self,
        endpoint: str,
        state: EndpointState,
        raw: RawInput,
        prediction_ids: list[str],
        live_latency_s: float,
        checked: tuple[Signature, Columns] | None = None,
    ) -> None:
        """Queue a copy of one live request for every shadow variant; never blocks.

        ``checked``: the live variant's signature and the columns it validated; a shadow
        with the same signature takes them as they are instead of validating ``raw``
        again (most shadows are a new version of the live model).
        """
        for variant, mv in state.router.shadows:
            if self._pending >= self.max_pending:
                self.stats.shed += 1
                self._observe(endpoint, variant.name, "shed")
                continue
            self._pending += 1
            task = asyncio.get_running_loop().create_task(
                self._run(endpoint, state, mv, raw, prediction_ids, checked)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        endpoint: str,
        state: EndpointState,
        mv: ModelVersion,
        raw: RawInput,
        prediction_ids: list[str],
        checked: tuple[Signature, Columns] | None,
    ) -> None:
        started = time.perf_counter()
        decoded: list[Columns] = []  # the coerced inputs, once the shadow's thread has them
        variant = f"{mv.name}-v{mv.version}"
        try:
            wait = self.plane.settings.load_wait_seconds
            runtime = await self.plane.pool.get(mv, wait, state.kind(mv))
            loop = asyncio.get_running_loop()
            # validation runs on the shadow's thread too: none of its work is on the loop
            prediction = await loop.run_in_executor(
                self._executor(variant), _predict, runtime, mv, raw, checked, decoded
            )
        except ModelportError as exc:
            columns = decoded[0] if decoded else None
            self.stats.failed += 1
            self._observe(endpoint, variant, "failed")
            log_ = self.plane.prediction_log
            if log_ is not None:
                log_.record_failure(
                    endpoint,
                    exc,
                    version=mv,
                    columns=columns,
                    latency_s=time.perf_counter() - started,
                    prediction_ids=prediction_ids,
                    shadow=True,
                )
        except Exception:  # a bug must not reach the live request's task
            log.exception("shadow %s on %s failed unexpectedly", variant, endpoint)
        else:
            self.stats.answered += 1
            self._observe(endpoint, variant, "answered")
            log_ = self.plane.prediction_log
            if log_ is not None:
                latency = time.perf_counter() - started
                columns = decoded[0]
                log_.record(
                    endpoint, mv, variant, prediction_ids, columns, prediction, latency, shadow=True
                )
        finally:
            self._pending -= 1

    def _executor(self, variant: str) -> ThreadPoolExecutor:
        executor = self._executors.get(variant)
        if executor is None:
            executor = self._executors[variant] = ThreadPoolExecutor(
                self.threads, thread_name_prefix=f"modelport-shadow-{variant}"
            )
        return executor

    def _observe(self, endpoint: str, variant: str, outcome: str) -> None:
        if self.observer is not None:
            self.observer(endpoint, variant, outcome)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for executor in self._executors.values():
            executor.shutdown(wait=False, cancel_futures=True)


def _predict(
    runtime: Any,
    mv: ModelVersion,
    raw: RawInput,
    checked: tuple[Signature, Columns] | None,
    decoded: list[Columns],
) -> Any:
    """Validate ``raw`` against the shadow's signature (unless the live variant's columns
    fit it) and predict, on a shadow thread; the columns go in ``decoded`` for the log."""
    if checked is not None and checked[0].inputs == mv.signature.inputs:
        columns = checked[1]
    else:
        columns = mv.signature.coerce_any(raw)
    decoded.append(columns)
    try:
        return runtime.predict(columns)
    except ModelportError:
        raise
    except Exception as exc:
        raise prediction_failed(exc) from exc
