"""The model pool: which versions are loaded in this process, loading and evicting them.

Loads run in a worker thread so the event loop keeps answering while a model loads.
A version is ``loading``, ``ready`` or ``failed``; at most ``max_loaded_models`` (and
``max_loaded_bytes`` of artifacts) stay loaded, and the least recently used version
is unloaded first, never one that is pinned (served by a deployment right now).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from modelport.errors import ModelLoading, ModelportError, Unavailable
from modelport.registry import ModelVersion
from modelport.runtimes.base import Runtime

log = logging.getLogger(__name__)

#: (model, version, runtime kind): the native and the compiled form load separately.
VersionKey = tuple[str, int, str]
State = Literal["loading", "ready", "failed"]
FAILED_RETRY_SECONDS = 30.0


@dataclass
class Slot:
    """One version's place in the pool."""

    version: ModelVersion
    kind: str = "native"
    state: State = "loading"
    runtime: Runtime | None = None
    error: str | None = None
    failed_at: float = 0.0
    loaded_at: float = 0.0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def key(self) -> VersionKey:
        return (self.version.name, self.version.version, self.kind)


class ModelPool:
    """Loaded model versions, keyed by (model, version), evicted least-recently-used."""

    def __init__(
        self,
        loader: Callable[[ModelVersion, str], Runtime],
        *,
        max_models: int = 32,
        max_bytes: int | None = None,
    ) -> None:
        self._loader = loader
        self._slots: OrderedDict[VersionKey, Slot] = OrderedDict()
        self._pinned: set[VersionKey] = set()
        self.max_models = max_models
        self.max_bytes = max_bytes

    def slots(self) -> list[Slot]:
        return list(self._slots.values())

    def state(self, key: VersionKey) -> State | None:
        slot = self._slots.get(key)
        return slot.state if slot else None

    def pin(self, keys: set[VersionKey]) -> None:
        """Versions that deployments serve now: never evicted."""
        self._pinned = set(keys)

    def start_load(self, version: ModelVersion, kind: str = "native") -> Slot:
        """Begin loading ``version`` unless it is loaded, loading, or failed recently."""
        key = (version.name, version.version, kind)
        slot = self._slots.get(key)
        if slot is not None:
            retry = (
                slot.state == "failed" and time.monotonic() - slot.failed_at > FAILED_RETRY_SECONDS
            )
            if not retry:
                self._slots.move_to_end(key)
                return slot
        slot = Slot(version=version, kind=kind)
        self._slots[key] = slot
        slot.task = asyncio.get_running_loop().create_task(self._load(slot))
        return slot

    async def _load(self, slot: Slot) -> None:
        started = time.perf_counter()
        try:
            runtime = await asyncio.to_thread(self._loader, slot.version, slot.kind)
        except ModelportError as exc:
            self._fail(slot, str(exc))
        except Exception as exc:  # a library's own error: report it, keep serving the rest
            self._fail(slot, f"{type(exc).__name__}: {exc}")
        else:
            slot.runtime, slot.state, slot.loaded_at = runtime, "ready", time.time()
            elapsed = time.perf_counter() - started
            log.info("loaded %s (%s) in %.2fs", slot.version.uri, slot.kind, elapsed)
            self._evict()

    def _fail(self, slot: Slot, error: str) -> None:
        slot.state, slot.error, slot.failed_at = "failed", error, time.monotonic()
        log.error("could not load %s: %s", slot.version.uri, error)

    async def wait_loaded(self, version: ModelVersion, kind: str = "native") -> Slot:
        """Load ``version`` if needed and wait for the outcome (ready or failed)."""
        slot = self.start_load(version, kind)
        if slot.task is not None:
            await asyncio.shield(slot.task)
        return slot

    async def get(self, version: ModelVersion, wait: float, kind: str = "native") -> Runtime:
        """The loaded runtime for ``version``, waiting up to ``wait`` s for a load to finish."""
        slot = self.start_load(version, kind)
        if slot.state == "loading" and wait > 0 and slot.task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(slot.task), wait)
        if slot.state == "ready" and slot.runtime is not None:
            self._slots.move_to_end(slot.key)
            return slot.runtime
        if slot.state == "failed":
            raise Unavailable(
                f"{version.uri} failed to load: {slot.error}",
                hint="fix the artifact or deploy another version; other endpoints keep serving",
                retry_after=int(FAILED_RETRY_SECONDS),
            )
        raise ModelLoading(
            f"{version.uri} is still loading", hint="retry in a moment", retry_after=1
        )

    def _evict(self) -> None:
        def over() -> bool:
            ready = [s for s in self._slots.values() if s.state == "ready"]
            size = sum(s.version.artifact.size for s in ready)
            return len(ready) > self.max_models or (
                self.max_bytes is not None and size > self.max_bytes
            )

        for key in list(self._slots):
            if not over():
                return
            slot = self._slots[key]
            if key in self._pinned or slot.state != "ready":
                continue
            self.unload(key)

    def unload(self, key: VersionKey) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None and slot.runtime is not None:
            slot.runtime.unload()
            log.info("unloaded %s", slot.version.uri)

    async def close(self) -> None:
        for slot in list(self._slots.values()):
            if slot.task is not None and not slot.task.done():
                slot.task.cancel()
        for key in list(self._slots):
            self.unload(key)
