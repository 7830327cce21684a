"""A batch job's input: which files, and their rows as a stream of bounded chunks.

``input`` is a Parquet or CSV file, a folder (a partitioned dataset: every Parquet and
CSV file under it, with hive ``key=value`` folders as columns), a glob (``data/*.parquet``,
``data/**/*.csv``), or the same as a URL (``s3://bucket/data/``, ``file:///data``,
``memory://...``; fsspec does the object stores). Files are taken in path order, so
the same input always gives the same chunks.

Chunks hold at most ``chunk_rows`` rows, read with Arrow's streaming readers
(`pyarrow.parquet.ParquetFile.iter_batches`, `pyarrow.csv.open_csv`), so memory is
bounded by the chunk, never by the file. Chunk ``k`` of a file holds its rows
``[k * chunk_rows, (k + 1) * chunk_rows)``: a resumed run reads the same chunks as the
first one. CSV columns the model's signature names are read as text and turned into
the signature's types per row by the scorer, so a cell that is not a number is a bad row
named by file, line and column, never a failed read.

Parquet chunks can also be read where they are scored: `Inputs.spans` groups them by
the row group each starts in (a reader decodes from a row group's start, so a span
never makes it decode rows twice, but for the part of a chunk that crosses into the
group), and `Inputs.read_span` reads one span's chunks.

Example::

    inputs = resolve("data/*.parquet")
    inputs.check_columns(["amount", "user_id"])
    for chunk in inputs.chunks(100_000, ["amount", "user_id"]):
        print(chunk.source, chunk.offset, chunk.table.num_rows)
"""

from __future__ import annotations

import csv
import glob as globbing
import io
import itertools
from collections.abc import Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from modelport.errors import InvalidInput, NotFound
from modelport.safepaths import check_url

Format = Literal["parquet", "csv"]

PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2")
_GLOB_CHARS = frozenset("*?[")
#: Bytes read at a time from a Parquet column chunk.
_PAGE_BUFFER = 1 << 20
#: Bytes of a CSV file read to find its header.
_HEADER_BYTES = 1 << 16


def is_csv(name: str | None) -> bool:
    """Whether ``name`` is a CSV file (by its suffix)."""
    return name is not None and name.lower().endswith(CSV_SUFFIXES)


def place(source: str | None, row: int) -> str:
    """Where row ``row`` (0-based, within its file) is, as people count: the line of a
    CSV file (the header is line 1), the 1-based row of anything else."""
    if source is None:
        return f"row {row + 1}"
    if is_csv(source):
        return f"{source}, line {row + 2}"
    return f"{source}, row {row + 1}"


def place_number(source: str | None, row: int) -> int:
    """The number `place` gives: the CSV line, else the 1-based row."""
    return row + 2 if is_csv(source) else row + 1


def filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem a path or URL lives on, and the path within it.

    Local paths and ``file://`` use Arrow's own; other URLs go through fsspec (when it is
    installed), else Arrow's S3/GCS/HDFS filesystems.
    """
    if "://" not in url:
        return pafs.LocalFileSystem(), str(Path(url).expanduser().resolve())
    if url.startswith("file://"):
        return pafs.LocalFileSystem(), url[len("file://") :]
    check_url(url, allow_private=True, what="batch location")  # never link-local/metadata
    try:
        import fsspec
    except ImportError:
        try:
            fs, path = pafs.FileSystem.from_uri(url)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(
                f"cannot open {url}: {exc}",
                hint="install fsspec and the filesystem's package (e.g. s3fs) for this URL",
            ) from None
        return fs, path
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise InvalidInput(
            f"cannot open {url}: {exc}",
            hint="install the fsspec package for this URL's scheme (s3fs, gcsfs, adlfs)",
        ) from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


@dataclass(frozen=True)
class InputFile:
    """One input file: where it is, its format, size, modification time and rows."""

    path: str  # as the manifest records it: an absolute local path, or a URL
    fs_path: str  # the path within the filesystem
    format: Format
    bytes: int
    mtime: str | None  # ISO 8601, UTC
    rows: int | None = None  # from Parquet metadata; unknown for CSV
    partition: tuple[tuple[str, str], ...] = ()  # hive key=value folders above the file

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "bytes": self.bytes,
            "mtime": self.mtime,
            "format": self.format,
            "rows": self.rows,
        }

    def chunk_count(self, chunk_rows: int) -> int | None:
        """How many chunks the file makes (an empty file none); None when unknown."""
        return None if self.rows is None else -(-self.rows // chunk_rows)


@dataclass
class Chunk:
    """At most ``chunk_rows`` rows of one file, from row ``offset`` (0-based) on."""

    index: int  # the chunk's number across the whole input, from 0
    source: str  # the file's path, as `InputFile.path`
    offset: int
    table: pa.Table
    bytes: int = 0  # the share of the input's bytes this chunk accounts for


@dataclass(frozen=True)
class Span:
    """Chunks ``start`` to ``start + count - 1`` of the file at ``file`` in
    `Inputs.files`, all starting in one of its row groups. ``first_index`` is the
    file's first chunk's index across the input."""

    file: int
    first_index: int
    start: int
    count: int

    @property
    def indices(self) -> range:
        return range(self.first_index + self.start, self.first_index + self.start + self.count)


@dataclass
class Inputs:
    """The resolved input: a filesystem and its files, in order."""

    input: str
    fs: pafs.FileSystem
    files: list[InputFile]
    _headers: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for worker processes on another thread, while this one may still be
        # adding headers: a copy, so the pickler never sees the dict change.
        state = dict(self.__dict__)
        state["_headers"] = dict(self._headers)
        return state

    @property
    def rows_total(self) -> int | None:
        """Rows of every file, when every file is Parquet (metadata); else None."""
        rows = [f.rows for f in self.files]
        return None if any(r is None for r in rows) else sum(r or 0 for r in rows)

    @property
    def bytes_total(self) -> int:
        return sum(f.bytes for f in self.files)

    def to_list(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.files]

    def columns_of(self, file: InputFile) -> list[str]:
        """The columns of ``file``: its own (schema or CSV header), then its partition keys."""
        names = self._own_columns(file)
        return names + [k for k, _ in file.partition if k not in names]

    def _own_columns(self, file: InputFile) -> list[str]:
        if file.path not in self._headers:
            own = self._parquet_schema(file).names if file.format == "parquet" else None
            self._headers[file.path] = own if own is not None else self._csv_header(file)
        return list(self._headers[file.path])

    def check_columns(self, columns: Iterable[str], *, what: str = "the job needs") -> None:
        """Raise `InvalidInput` naming the first file that lacks one of ``columns``."""
        wanted = list(dict.fromkeys(columns))
        for file in self.files:
            have = self.columns_of(file)
            missing = [c for c in wanted if c not in have]
            if missing:
                raise InvalidInput(
                    f"{file.path} has no column(s) {missing}, which {what}",
                    hint=f"its columns are {have}; fix the file, or the job's --id-column, "
                    "--at-column and --features",
                )

    def chunks(
        self,
        chunk_rows: int,
        columns: Sequence[str],
        *,
        text_columns: Container[str] = (),
        skip: Container[int] = (),
    ) -> Iterator[Chunk]:
        """Every file's rows, ``columns`` only, in chunks of at most ``chunk_rows`` rows.

        CSV columns in ``text_columns`` are read as text. Chunks whose index is in
        ``skip`` are not yielded (files whose every chunk is skipped are not opened).
        """
        first = 0  # the index of the file's first chunk
        for file in self.files:
            count = file.chunk_count(chunk_rows)
            if count is not None and all(first + k in skip for k in range(count)):
                first += count
                continue
            own = self._own_columns(file)
            wanted = [c for c in columns if c in own]
            if file.format == "parquet":
                tables = self._parquet_tables(file, chunk_rows, wanted, first, skip)
            else:
                tables = self._csv_tables(file, chunk_rows, wanted, text_columns)
            seen = 0
            for offset, table, size in tables:
                index = first + offset // chunk_rows
                seen = index - first + 1
                if index not in skip:
                    table = _with_partition(table, file, columns)
                    yield Chunk(index, file.path, offset, table, size)
            first += count if count is not None else seen

    def spans(self, chunk_rows: int, skip: Container[int] = ()) -> list[Span] | None:
        """Every chunk not all in ``skip``, as spans: those of one file that start in
        one row group. None when a file is CSV (its rows are known only by reading it).
        """
        if any(f.format != "parquet" or f.rows is None for f in self.files):
            return None
        spans: list[Span] = []
        first = 0  # the index of the file's first chunk
        for position, file in enumerate(self.files):
            count = file.chunk_count(chunk_rows) or 0
            meta = self._parquet_file(file).metadata
            group_start = 0
            for group in range(meta.num_row_groups):
                group_end = group_start + meta.row_group(group).num_rows
                start = -(-group_start // chunk_rows)  # the first chunk starting in it
                stop = min(count, -(-group_end // chunk_rows))
                if start < stop and any(first + k not in skip for k in range(start, stop)):
                    spans.append(Span(position, first, start, stop - start))
                group_start = group_end
            first += count
        return spans

    def read_span(
        self, span: Span, chunk_rows: int, columns: Sequence[str], skip: Container[int] = ()
    ) -> Iterator[Chunk]:
        """The chunks of ``span`` not in ``skip``, read as `chunks` reads them."""
        file = self.files[span.file]
        own = self._own_columns(file)
        wanted = [c for c in columns if c in own]
        tables = self._parquet_tables(
            file, chunk_rows, wanted, span.first_index, skip, start=span.start, count=span.count
        )
        for offset, table, size in tables:
            index = span.first_index + offset // chunk_rows
            if index not in skip:
                yield Chunk(index, file.path, offset, _with_partition(table, file, columns), size)

    # -- Parquet -------------------------------------------------------------------

    def _parquet_file(self, file: InputFile) -> pq.ParquetFile:
        # Buffered page reads, no pre-buffering: the reader then holds about a record
        # batch, not a whole row group (pyarrow's default row group is 1Mi rows).
        local = isinstance(self.fs, pafs.LocalFileSystem)
        try:
            return pq.ParquetFile(
                self.fs.open_input_file(file.fs_path),
                buffer_size=_PAGE_BUFFER if local else 8 * _PAGE_BUFFER,
                pre_buffer=False,
            )
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(file, exc) from None

    def _parquet_schema(self, file: InputFile) -> pa.Schema:
        return self._parquet_file(file).schema_arrow

    def _parquet_tables(
        self,
        file: InputFile,
        chunk_rows: int,
        columns: list[str],
        first_index: int,
        skip: Container[int],
        *,
        start: int = 0,
        count: int | None = None,
    ) -> Iterator[tuple[int, pa.Table, int]]:
        """(offset, rows, bytes) of the file's chunks ``start`` on (``count`` of them,
        or to the end); leading chunks in ``skip`` are not read."""
        parquet = self._parquet_file(file)
        meta = parquet.metadata
        total = file.chunk_count(chunk_rows) or 0
        stop = total if count is None else min(total, start + count)
        # Start at the row group holding the first chunk still to do: nothing before
        # it is decoded.
        first = start
        while first < stop and first_index + first in skip:
            first += 1
        if first >= stop:
            return
        start_row = first * chunk_rows
        group, group_start = 0, 0
        while group < meta.num_row_groups and group_start + meta.row_group(group).num_rows <= (
            start_row
        ):
            group_start += meta.row_group(group).num_rows
            group += 1
        batches = parquet.iter_batches(
            batch_size=min(chunk_rows, 65_536),
            row_groups=range(group, meta.num_row_groups),
            columns=columns,
            use_threads=False,
        )
        per_row = file.bytes / max(1, file.rows or 1)
        tables = _rechunk(_dropping(_guarded(batches, file), start_row - group_start), chunk_rows)
        offset = start_row
        for table in itertools.islice(tables, stop - first):
            yield offset, table, int(per_row * table.num_rows)
            offset += table.num_rows

    # -- CSV -----------------------------------------------------------------------

    def _csv_header(self, file: InputFile) -> list[str]:
        try:
            with self.fs.open_input_stream(file.fs_path, compression="detect") as stream:
                head = stream.read(_HEADER_BYTES)
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(file, exc) from None
        text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
        line = text.splitlines()[0] if text else ""
        names = next(csv.reader(io.StringIO(line)), [])
        if not names:
            raise InvalidInput(
                f"{file.path} has no header row", hint="the first line must name the columns"
            )
        return names

    def _csv_tables(
        self,
        file: InputFile,
        chunk_rows: int,
        columns: list[str],
        text_columns: Container[str],
    ) -> Iterator[tuple[int, pa.Table, int]]:
        convert = pcsv.ConvertOptions(
            include_columns=columns,
            column_types={c: pa.string() for c in columns if c in text_columns},
            strings_can_be_null=True,
        )
        try:
            stream = self.fs.open_input_stream(file.fs_path, compression="detect")
            reader = pcsv.open_csv(
                stream,
                read_options=pcsv.ReadOptions(block_size=1 << 22),
                convert_options=convert,
            )
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(file, exc) from None
        offset, position = 0, 0
        with stream:
            for table in _rechunk(_guarded(reader, file), chunk_rows):
                now = _tell(stream, file.bytes)
                yield offset, table, max(0, now - position)
                offset, position = offset + table.num_rows, now


def resolve(input: str) -> Inputs:
    """The files ``input`` names, in path order, with their size and modification time.

    Raises `NotFound` when nothing matches and `InvalidInput` for a file that is
    neither Parquet nor CSV.
    """
    fs, path = filesystem(input)
    scheme = input.split("://", 1)[0] + "://" if "://" in input else ""
    infos = _matches(fs, path, input)
    root = path if not _GLOB_CHARS & set(path) else _glob_root(path)
    files = [_input_file(fs, info, scheme, root) for info in infos]
    if not files:
        raise NotFound(
            f"no Parquet or CSV files in {input}",
            hint="give a file, a folder of .parquet/.csv files, or a glob such as "
            "'data/*.parquet' (quoted, so the shell leaves it alone)",
        )
    return Inputs(input=input, fs=fs, files=files)


def _matches(fs: pafs.FileSystem, path: str, input: str) -> list[pafs.FileInfo]:
    """The data files a path, folder or glob names, sorted by path."""
    if _GLOB_CHARS & set(path):
        found = [fs.get_file_info(p) for p in _glob(fs, path, input)]
    else:
        found = [fs.get_file_info(path)]
        if found[0].type == pafs.FileType.NotFound:
            raise NotFound(f"the input {input} does not exist", hint="check the path or URL")
    files: list[pafs.FileInfo] = []
    for info in found:
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(info.path, recursive=True)
            below = fs.get_file_info(selector)
            files.extend(i for i in below if i.is_file and _is_data(i.path, info.path))
        elif info.is_file:
            files.append(info)
    return sorted({i.path: i for i in files}.values(), key=lambda i: i.path)


def _glob(fs: pafs.FileSystem, path: str, input: str) -> list[str]:
    if isinstance(fs, pafs.LocalFileSystem):
        return globbing.glob(path, recursive=True)
    handler = getattr(fs, "handler", None)
    inner = getattr(handler, "fs", None)
    if inner is None:
        raise InvalidInput(
            f"cannot expand the glob {input} on this filesystem",
            hint="install fsspec (and s3fs/gcsfs), or name a folder instead",
        )
    return list(inner.glob(path))


def _glob_root(path: str) -> str:
    parts = path.split("/")
    fixed = [p for p in parts[: next(i for i, p in enumerate(parts) if _GLOB_CHARS & set(p))]]
    return "/".join(fixed)


def _is_data(path: str, root: str) -> bool:
    """Parquet and CSV files, leaving out hidden and bookkeeping files (``_SUCCESS``,
    ``_metadata``, ``.crc``) and whatever lies in such folders (e.g. our own ``_rejects``)."""
    relative = path[len(root) :].lstrip("/")
    if any(part.startswith((".", "_")) for part in relative.split("/")):
        return False
    return path.lower().endswith(PARQUET_SUFFIXES + CSV_SUFFIXES)


def _input_file(fs: pafs.FileSystem, info: pafs.FileInfo, scheme: str, root: str) -> InputFile:
    path = info.path
    lower = path.lower()
    fmt: Format
    if lower.endswith(PARQUET_SUFFIXES):
        fmt = "parquet"
    elif lower.endswith(CSV_SUFFIXES):
        fmt = "csv"
    else:
        fmt = _sniff(fs, info)
    local = isinstance(fs, pafs.LocalFileSystem)
    mtime = info.mtime.astimezone(UTC).isoformat() if info.mtime is not None else None
    file = InputFile(
        path=path if local else scheme + path.lstrip("/"),
        fs_path=path,
        format=fmt,
        bytes=int(info.size or 0),
        mtime=mtime,
        partition=_partition(path, root),
    )
    if fmt == "parquet":
        try:
            rows = pq.ParquetFile(fs.open_input_file(path)).metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise _unreadable(file, exc) from None
        file = InputFile(**{**file.__dict__, "rows": rows})
    return file


def _sniff(fs: pafs.FileSystem, info: pafs.FileInfo) -> Format:
    """A file named neither .parquet nor .csv: Parquet if it starts with its magic."""
    with fs.open_input_stream(info.path) as stream:
        return "parquet" if stream.read(4) == b"PAR1" else "csv"


def _partition(path: str, root: str) -> tuple[tuple[str, str], ...]:
    relative = path[len(root) :].strip("/").split("/")[:-1] if path.startswith(root) else []
    pairs = [part.split("=", 1) for part in relative if "=" in part]
    return tuple((k, v) for k, v in pairs if k)


def _with_partition(table: pa.Table, file: InputFile, columns: Sequence[str]) -> pa.Table:
    """``table`` plus the hive partition keys the job asked for, as text columns."""
    for key, value in file.partition:
        if key in columns and key not in table.column_names:
            table = table.append_column(key, pa.repeat(pa.scalar(value), table.num_rows))
    return table


def _unreadable(file: InputFile, exc: BaseException) -> InvalidInput:
    kind = "Parquet" if file.format == "parquet" else "CSV"
    return InvalidInput(
        f"{file.path} is not a readable {kind} file: {exc}",
        hint="check that the file is complete (not truncated or still being written), "
        "or leave it out of the input",
    )


def _guarded(batches: Iterable[pa.RecordBatch], file: InputFile) -> Iterator[pa.RecordBatch]:
    """``batches``, with a read error named after the file."""
    rows = 0
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise InvalidInput(
                f"{file.path}: reading failed after {rows} rows: {exc}",
                hint="a CSV column whose values change type further down (numbers, then "
                "text) must be fixed in the file; a Parquet file may be truncated",
            ) from None
        rows += batch.num_rows
        yield batch


def _dropping(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """``batches`` without their first ``rows`` rows."""
    for batch in batches:
        if rows >= batch.num_rows:
            rows -= batch.num_rows
            continue
        yield batch.slice(rows) if rows else batch
        rows = 0


def _rechunk(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Record batches regrouped into tables of exactly ``size`` rows (the last fewer)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(size - count, batch.num_rows)
            pending.append(batch.slice(0, take))
            count += take
            batch = batch.slice(take)
            if count == size:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending)


def _tell(stream: Any, size: int) -> int:
    """How far into a compressed or plain stream the reader is (its size at worst)."""
    try:
        return min(int(stream.tell()), size) if size else int(stream.tell())
    except (OSError, pa.ArrowException):
        return size
