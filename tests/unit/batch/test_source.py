"""A batch job's input: files resolved in order, read in bounded chunks that a resumed
run reads the same way, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelport.batch.source import is_csv, place, resolve
from modelport.errors import InvalidInput, NotFound


def numbers(start: int, n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n)), "x": [float(i) for i in range(n)]})


def write_parts(folder: Path, sizes: list[int], row_group_size: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    start = 0
    for i, n in enumerate(sizes):
        pq.write_table(
            numbers(start, n), folder / f"part-{i}.parquet", row_group_size=row_group_size
        )
        start += n


def ids(tables: list[pa.Table]) -> list[int]:
    return [v for t in tables for v in t.column("id").to_pylist()]


def test_a_folder_is_read_in_path_order_in_chunks_of_at_most_chunk_rows(tmp_path: Path) -> None:
    write_parts(tmp_path / "data", [25, 10, 0, 7])
    (tmp_path / "data" / "_SUCCESS").write_text("")
    (tmp_path / "data" / "_rejects").mkdir()
    pq.write_table(numbers(0, 3), tmp_path / "data" / "_rejects" / "part-0.parquet")
    inputs = resolve(str(tmp_path / "data"))
    assert [Path(f.path).name for f in inputs.files] == [f"part-{i}.parquet" for i in range(4)]
    assert inputs.rows_total == 42
    chunks = list(inputs.chunks(10, ["id", "x"]))
    # each file is cut on its own: 25 -> 10, 10, 5; 10 -> 10; an empty file -> none
    assert [(c.index, Path(c.source).name, c.offset, c.table.num_rows) for c in chunks] == [
        (0, "part-0.parquet", 0, 10),
        (1, "part-0.parquet", 10, 10),
        (2, "part-0.parquet", 20, 5),
        (3, "part-1.parquet", 0, 10),
        (4, "part-3.parquet", 0, 7),
    ]
    assert ids([c.table for c in chunks]) == list(range(42))
    assert sum(f.chunk_count(10) or 0 for f in inputs.files) == len(chunks)


def test_skipped_chunks_are_not_read_and_the_rest_are_the_same(tmp_path: Path) -> None:
    write_parts(tmp_path / "data", [95, 30], row_group_size=20)
    inputs = resolve(str(tmp_path / "data"))
    every = list(inputs.chunks(10, ["id"]))
    skip = {0, 1, 2, 3, 5, 10, 11, 12}  # file 0 from row 40 (row group 2), file 1 entirely
    rest = list(inputs.chunks(10, ["id"], skip=skip))
    assert [c.index for c in rest] == [i for i in range(len(every)) if i not in skip]
    for chunk in rest:
        same = every[chunk.index]
        assert (chunk.source, chunk.offset) == (same.source, same.offset)
        assert chunk.table.equals(same.table)


def test_a_glob_and_hive_partitions(tmp_path: Path) -> None:
    for day in ("2024-05-01", "2024-05-02"):
        write_parts(tmp_path / "data" / f"day={day}", [3])
    (tmp_path / "data" / "notes.txt").write_text("not data")
    inputs = resolve(str(tmp_path / "data" / "**" / "*.parquet"))
    assert len(inputs.files) == 2
    inputs.check_columns(["id", "day"])
    chunks = list(inputs.chunks(100, ["id", "day"]))
    assert [c.table.column("day").to_pylist() for c in chunks] == [
        ["2024-05-01"] * 3,
        ["2024-05-02"] * 3,
    ]
    folder = resolve(str(tmp_path / "data"))
    assert [f.partition for f in folder.files] == [
        (("day", "2024-05-01"),),
        (("day", "2024-05-02"),),
    ]


def test_csv_text_columns_stay_text_until_the_scorer_parses_them(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("id,x,name\n1,0.5,a\n2,oops,b\n3,,c\n")
    inputs = resolve(str(path))
    assert inputs.files[0].format == "csv" and inputs.rows_total is None
    (chunk,) = list(inputs.chunks(10, ["id", "x"], text_columns={"x"}))
    assert chunk.table.column_names == ["id", "x"]
    assert chunk.table.column("x").to_pylist() == ["0.5", "oops", None]
    assert chunk.table.column("id").type == pa.int64()
    assert is_csv(chunk.source) and place(chunk.source, 1) == f"{path}, line 3"
    assert place(str(tmp_path / "a.parquet"), 1) == f"{tmp_path / 'a.parquet'}, row 2"


def test_csv_chunks_and_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("id,x\n" + "".join(f"{i},{i / 2}\n" for i in range(23)))
    chunks = list(resolve(str(path)).chunks(10, ["id", "x"]))
    assert [(c.offset, c.table.num_rows) for c in chunks] == [(0, 10), (10, 10), (20, 3)]
    assert sum(c.bytes for c in chunks) <= path.stat().st_size
    with pytest.raises(InvalidInput, match=r"rows\.csv has no column\(s\) \['amount'\]"):
        resolve(str(path)).check_columns(["id", "amount"])


def test_nothing_there_and_corrupt_parquet_are_named(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        resolve(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match="no Parquet or CSV files"):
        resolve(str(tmp_path / "empty"))
    bad = tmp_path / "bad.parquet"
    pq.write_table(numbers(0, 100), bad)
    bad.write_bytes(bad.read_bytes()[:-40])  # truncated: the footer is gone
    with pytest.raises(InvalidInput, match=r"bad\.parquet is not a readable Parquet file"):
        resolve(str(bad))


def test_object_store_urls_through_fsspec(tmp_path: Path) -> None:
    import fsspec

    memory = fsspec.filesystem("memory")
    for i in range(2):
        with memory.open(f"/batch-source-test/in/part-{i}.parquet", "wb") as f:
            pq.write_table(numbers(10 * i, 10), f)
    try:
        inputs = resolve("memory://batch-source-test/in/*.parquet")
        assert [f.path for f in inputs.files] == [
            "memory://batch-source-test/in/part-0.parquet",
            "memory://batch-source-test/in/part-1.parquet",
        ]
        assert ids([c.table for c in inputs.chunks(4, ["id"])]) == list(range(20))
        assert resolve("memory://batch-source-test/in").rows_total == 20
    finally:
        memory.rm("/batch-source-test", recursive=True)
    local = resolve(
        f"file://{tmp_path / 'x.csv'}" if (tmp_path / "x.csv").write_text("a\n1\n") else ""
    )
    assert local.files[0].path == str(tmp_path / "x.csv")


def test_spans_hold_the_chunks_starting_in_each_row_group_and_read_as_chunks_do(
    tmp_path: Path,
) -> None:
    write_parts(tmp_path / "data", [95, 30], row_group_size=20)
    inputs = resolve(str(tmp_path / "data"))
    every = list(inputs.chunks(10, ["id"]))
    spans = inputs.spans(30)
    assert spans is not None
    # row groups of 20 rows, chunks of 30: chunk starts 0, 30, 60, 90 fall in groups
    # 0, 1, 3 and 4 of the first file; the second file's one chunk starts in its group 0
    assert [(s.file, s.start, s.count) for s in spans] == [
        (0, 0, 1), (0, 1, 1), (0, 2, 1), (0, 3, 1), (1, 0, 1),
    ]  # fmt: skip
    assert [list(s.indices) for s in spans] == [[0], [1], [2], [3], [4]]
    read = [c for s in spans for c in inputs.read_span(s, 30, ["id"])]
    assert [(c.index, c.offset, c.table.num_rows) for c in read] == [
        (0, 0, 30), (1, 30, 30), (2, 60, 30), (3, 90, 5), (4, 0, 30),
    ]  # fmt: skip
    assert ids([c.table for c in read]) == ids([c.table for c in every])
    # with chunks of 10, a span holds every chunk starting in its group; done ones are
    # not read again, and a span whose chunks are all done is left out
    spans = inputs.spans(10, skip={0, 1, 2})
    assert spans is not None and [list(s.indices) for s in spans][:2] == [[2, 3], [4, 5]]
    assert [c.index for c in inputs.read_span(spans[0], 10, ["id"], skip={2})] == [3]
    for span in spans:
        for chunk in inputs.read_span(span, 10, ["id"]):
            same = every[chunk.index]
            assert (chunk.source, chunk.offset) == (same.source, same.offset)
            assert chunk.table.equals(same.table)


def test_csv_inputs_have_no_spans(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,x\n1,2.0\n")
    assert resolve(str(tmp_path / "a.csv")).spans(10) is None
