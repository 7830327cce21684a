"""How far a batch run is: a progress bar on a terminal, JSON lines anywhere else.

Engines call `Progress.start` once, `Progress.advance` after each finished chunk and
`Progress.close` at the end. The total is in rows when every input is Parquet (its
metadata has the row counts, read without scanning); a CSV input's rows are unknown
until read, so its time left comes from the share of its bytes read.

Off a terminal each chunk writes one line to stderr::

    {"event": "chunk", "chunks_done": 3, "rows_done": 300000, "rows_total": 2000000,
     "rows_per_s": 181234.5, "eta_s": 9.4}

Example::

    progress = for_stream(sys.stderr)
    manifest = predict(client, spec, progress=progress)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    """What engines report to."""

    def start(
        self, *, rows_total: int | None, bytes_total: int, rows_done: int = 0, bytes_done: int = 0
    ) -> None: ...

    def advance(self, *, rows: int, bytes: int) -> None: ...

    def close(self) -> None: ...


class Silent:
    """Reports nothing (the Python API's default)."""

    def start(
        self, *, rows_total: int | None, bytes_total: int, rows_done: int = 0, bytes_done: int = 0
    ) -> None:
        pass

    def advance(self, *, rows: int, bytes: int) -> None:
        pass

    def close(self) -> None:
        pass


class Estimate:
    """Rows per second and seconds left, from what this process has done since start
    (rows a resumed run found done count towards the total, not the rate)."""

    def __init__(self) -> None:
        self.rows_total: int | None = None
        self.bytes_total = 0
        self.rows_done = self.bytes_done = self.chunks_done = 0
        self._rows0 = self._bytes0 = 0
        self._started = time.monotonic()

    def start(
        self, *, rows_total: int | None, bytes_total: int, rows_done: int = 0, bytes_done: int = 0
    ) -> None:
        self.rows_total, self.bytes_total = rows_total, bytes_total
        self.rows_done = self._rows0 = rows_done
        self.bytes_done = self._bytes0 = bytes_done
        self._started = time.monotonic()

    def advance(self, *, rows: int, bytes: int) -> None:
        self.rows_done += rows
        self.bytes_done += bytes
        self.chunks_done += 1

    def close(self) -> None:
        pass

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self._started, 1e-9)

    @property
    def rows_per_s(self) -> float:
        return (self.rows_done - self._rows0) / self.elapsed

    @property
    def eta_s(self) -> float | None:
        if self.rows_total is not None:
            rate = self.rows_per_s
            return max(0.0, self.rows_total - self.rows_done) / rate if rate > 0 else None
        read = self.bytes_done - self._bytes0
        if self.bytes_total and read > 0:
            return max(0, self.bytes_total - self.bytes_done) * self.elapsed / read
        return None

    @property
    def fraction(self) -> float | None:
        if self.rows_total:
            return min(1.0, self.rows_done / self.rows_total)
        if self.bytes_total:
            return min(1.0, self.bytes_done / self.bytes_total)
        return None


class JsonLines(Estimate):
    """One JSON object per finished chunk, on ``stream`` (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr

    def advance(self, *, rows: int, bytes: int) -> None:
        super().advance(rows=rows, bytes=bytes)
        eta = self.eta_s
        line = {
            "event": "chunk",
            "chunks_done": self.chunks_done,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "rows_per_s": round(self.rows_per_s, 1),
            "eta_s": round(eta, 1) if eta is not None else None,
        }
        self.stream.write(json.dumps(line) + "\n")
        self.stream.flush()


class Bar(Estimate):
    """A rich progress bar: rows done, rows/s and time left."""

    def __init__(self, stream: TextIO | None = None, *, label: str = "scoring") -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[rows]} rows"),
            TextColumn("{task.fields[rate]} rows/s"),
            TextColumn("ETA {task.fields[eta]}"),
            console=Console(file=stream or sys.stderr),
        )
        self._task: Any = None
        self._label = label

    def start(
        self, *, rows_total: int | None, bytes_total: int, rows_done: int = 0, bytes_done: int = 0
    ) -> None:
        super().start(
            rows_total=rows_total,
            bytes_total=bytes_total,
            rows_done=rows_done,
            bytes_done=bytes_done,
        )
        self._bar.start()
        self._task = self._bar.add_task(self._label, total=1.0, **self._fields())
        self._bar.update(self._task, completed=self.fraction or 0.0)

    def advance(self, *, rows: int, bytes: int) -> None:
        super().advance(rows=rows, bytes=bytes)
        if self._task is not None:
            self._bar.update(self._task, completed=self.fraction or 0.0, **self._fields())

    def close(self) -> None:
        self._bar.stop()

    def _fields(self) -> dict[str, Any]:
        total = f"/{self.rows_total:,}" if self.rows_total is not None else ""
        eta = self.eta_s
        return {
            "rows": f"{self.rows_done:,}{total}",
            "rate": f"{self.rows_per_s:,.0f}",
            "eta": "-" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta)),
        }


def for_stream(stream: TextIO | None = None) -> Progress:
    """A bar when ``stream`` (stderr by default) is a terminal, JSON lines otherwise."""
    stream = stream or sys.stderr
    isatty = getattr(stream, "isatty", None)
    return Bar(stream) if isatty is not None and isatty() else JsonLines(stream)
