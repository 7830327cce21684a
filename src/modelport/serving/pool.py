"""The model pool: which versions are loaded in this process, loading and evicting them.

Loads run in a worker thread so the event loop keeps answering while a model loads.
A version is ``loading``, ``ready`` or ``failed``; at most ``max_loaded_models`` (and
``max_loaded_bytes`` of artifacts) stay loaded, and the least recently used version
is unloaded first, never one that is pinned (served by a deployment right now).

Each load's memory is estimated (`Slot.memory_bytes`), and an optional observer hears of
every state change, so metrics follow the pool without the pool knowing of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
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
    #: estimated memory the load took (resident-set growth; see `ModelPool._measured_load`)
    memory_bytes: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def key(self) -> VersionKey:
        return (self.version.name, self.version.version, self.kind)


#: ``observer(slot, before, after)``, on the event loop, when a slot changes state;
#: ``None`` is "not in the pool" (before a load starts, after an unload).
PoolObserver = Callable[[Slot, State | None, State | None], None]


def resident_bytes() -> int | None:
    """This process's resident set size (``/proc/self/statm``); None where there is none."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class ModelPool:
    """Loaded model versions, keyed by (model, version), evicted least-recently-used."""

    def __init__(
        self,
        loader: Callable[[ModelVersion, str], Runtime],
        *,
        max_models: int = 32,
        max_bytes: int | None = None,
        observer: PoolObserver | None = None,
    ) -> None:
        self._loader = loader
        #: told of every state change (the metrics hook)
        self.observer = observer
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
            self._tell(slot, slot.state, None)
        slot = Slot(version=version, kind=kind)
        self._slots[key] = slot
        self._tell(slot, None, slot.state)
        slot.task = asyncio.get_running_loop().create_task(self._load(slot))
        return slot

    async def _load(self, slot: Slot) -> None:
        started = time.perf_counter()
        try:
            runtime, memory = await asyncio.to_thread(self._measured_load, slot.version, slot.kind)
        except ModelportError as exc:
            self._fail(slot, str(exc))
        except Exception as exc:  # a library's own error: report it, keep serving the rest
            self._fail(slot, f"{type(exc).__name__}: {exc}")
        else:
            slot.runtime, slot.memory_bytes, slot.loaded_at = runtime, memory, time.time()
            self._set_state(slot, "ready")
            elapsed = time.perf_counter() - started
            log.info("loaded %s (%s) in %.2fs", slot.version.uri, slot.kind, elapsed)
            self._evict()

    def _measured_load(self, version: ModelVersion, kind: str) -> tuple[Runtime, int]:
        """Load ``version`` and estimate the memory it took, in bytes.

        The estimate is the growth of the process's resident set during the load, so
        whatever else the process allocates meanwhile (another load, requests) counts
        too; where that is unknown (no ``/proc``) or not positive (memory freed meanwhile,
        or reused), it is the artifact's size.
        """
        before = resident_bytes()
        runtime = self._loader(version, kind)
        after = resident_bytes()
        grown = after - before if before is not None and after is not None else 0
        return runtime, grown if grown > 0 else version.artifact.size

    def _fail(self, slot: Slot, error: str) -> None:
        slot.error, slot.failed_at = error, time.monotonic()
        self._set_state(slot, "failed")
        log.error("could not load %s: %s", slot.version.uri, error)

    def _set_state(self, slot: Slot, state: State) -> None:
        before, slot.state = slot.state, state
        if self._slots.get(slot.key) is slot:  # a slot unloaded meanwhile is nobody's
            self._tell(slot, before, state)

    def _tell(self, slot: Slot, before: State | None, after: State | None) -> None:
        if self.observer is not None:
            self.observer(slot, before, after)

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
        if slot is None:
            return
        self._tell(slot, slot.state, None)
        if slot.runtime is not None:
            slot.runtime.unload()
            log.info("unloaded %s", slot.version.uri)

    async def close(self) -> None:
        for slot in list(self._slots.values()):
            if slot.task is not None and not slot.task.done():
                slot.task.cancel()
        for key in list(self._slots):
            self.unload(key)
