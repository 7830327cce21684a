"""Publish a batch run's predictions to the online store, and read them back.

An endpoint deployed with ``precomputed`` answers from the rows a batch run computed,
keyed by the run's id columns. Publishing a run:

1. refuses a run that did not succeed, or that has no id columns;
2. streams its Parquet parts (`WRITE_ROWS` rows at a time, so memory stays bounded
   whatever the run's size) into a fresh namespace of the online store,
   ``predictions/{env}/{endpoint}/{run_id}``: one row per key holding every output
   column (each column that is not an id column, ``model`` or ``model_version``);
3. points the endpoint's publication (`modelport.registry.precomputed`) at that
   namespace in one transaction;
4. waits ``retire_after_s`` (by default twice the registry poll interval, plus a
   second: servers re-read the pointer on every poll) and deletes the rows of the run
   it replaced.

Readers resolve the pointer before they read rows, so they see the old run or the new
one, never a mix. A key is the text of its id value (``42``, ``42.0`` and ``"42"`` are
one key, as for feature views); with several id columns, their texts joined by ``|`` in
id-column order (``u42|2026-01-31``). When a key appears twice in a run, its last row
wins.

Example::

    manifest = read_manifest("out/churn")
    publication = publish(client, manifest, output="out/churn", endpoint="churn")
    lookup(client, "churn", ["u1", "u2"])  # {"u1": {"predictions": 1, ...}, "u2": None}
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelport.batch.spec import MANIFEST, Manifest
from modelport.errors import Conflict, InvalidInput, ModelportError, NotFound
from modelport.features.enrich import entity_key
from modelport.features.online import Lookup, OnlineStore, Row
from modelport.registry.entities import iso
from modelport.registry.precomputed import Publication, PublicationStore
from modelport.uri import check_name

if TYPE_CHECKING:
    import pyarrow.fs as pafs

    from modelport.client import Client

log = logging.getLogger(__name__)

#: Rows handed to the online store per write.
WRITE_ROWS = 5_000
#: Joins the texts of several id columns into one key.
KEY_SEPARATOR = "|"
#: Output-folder columns that say what computed a row rather than what it predicts.
PROVENANCE = ("model", "model_version")
_PLAIN = re.compile(r"[A-Za-z0-9._-]{1,128}")


def namespace_of(env: str, endpoint: str, run_id: str) -> str:
    """The online-store view holding ``run_id``'s predictions for ``endpoint``. A run id
    with characters a store would read specially (Redis key patterns: ``*?[]``) is
    replaced by its digest."""
    if not _PLAIN.fullmatch(run_id):
        run_id = hashlib.blake2b(run_id.encode(), digest_size=12).hexdigest()
    return f"predictions/{env}/{endpoint}/{run_id}"


def key_text(values: Sequence[Any]) -> str:
    """The key of a row whose id columns hold ``values``."""
    return KEY_SEPARATOR.join(entity_key(v) for v in values)


def read_manifest(output: str | Path) -> Manifest:
    """The manifest of the run whose output folder (a path or URL) is ``output``."""
    from modelport.batch.output import Output

    folder = Output(str(output))
    manifest = folder.read_manifest()
    if manifest is None:
        raise NotFound(
            f"{folder.path(MANIFEST)} does not exist: {output} is not a batch run's output folder",
            hint="pass the folder a `modelport batch predict` run wrote",
        )
    return manifest


def publish(
    client: Client,
    manifest: Manifest,
    *,
    output: str | Path,
    endpoint: str,
    env: str = "production",
    retire_after_s: float | None = None,
    store: OnlineStore | None = None,
) -> Publication:
    """Make ``manifest``'s run the source of ``endpoint``'s precomputed predictions.

    ``store`` defaults to the online store the client's settings name (the one servers
    read). Returns the new publication once the replaced run's rows are deleted.
    """
    check_name("endpoint", endpoint)
    check_name("environment", env)
    id_columns = _publishable(manifest)
    _same_model(client, manifest, endpoint, env)
    store = store if store is not None else client.features.store
    publications = PublicationStore(client.registry.engine)
    namespace = namespace_of(env, endpoint, manifest.run_id)
    computed_at = _finished(manifest)
    files = _parts(manifest, output)
    held = publications.current(env, endpoint)
    try:
        outputs, rows = _write(store, namespace, files, id_columns, computed_at)
    except BaseException:
        if held is None or held.namespace != namespace:  # never the rows being served
            _delete_quietly(store, namespace)
        raise
    publication = Publication(
        environment=env,
        endpoint=endpoint,
        run_id=manifest.run_id,
        namespace=namespace,
        model=manifest.model,
        version=manifest.version,
        id_columns=id_columns,
        outputs=outputs,
        rows=rows,
        computed_at=computed_at,
        published_at=datetime.now(UTC),
        published_by=client.user,
    )
    stale = publications.flip(publication)
    if stale:
        wait = 2 * client.settings.poll_interval_seconds + 1.0
        time.sleep(wait if retire_after_s is None else retire_after_s)
        _retire(store, publications, publication, stale)
    log.info("published run %s to %s/%s: %d rows", manifest.run_id, env, endpoint, rows)
    return publication


def current(client: Client, endpoint: str, *, env: str = "production") -> Publication | None:
    """The run ``endpoint``'s precomputed predictions come from, if any was published."""
    return PublicationStore(client.registry.engine).current(env, endpoint)


def lookup(
    client: Client,
    endpoint: str,
    keys: Sequence[str],
    *,
    env: str = "production",
    store: OnlineStore | None = None,
) -> dict[str, dict[str, Any] | None]:
    """Each key's published prediction (`answer`), or None for a key the run lacks."""
    publication = current(client, endpoint, env=env)
    if publication is None:
        raise NotFound(
            f"no predictions are published for endpoint {endpoint!r} in {env!r}",
            hint=f"publish a run: modelport batch publish OUTPUT_DIR --endpoint {endpoint}",
        )
    store = store if store is not None else client.features.store
    (found,) = store.read([Lookup(publication.namespace, "rows", list(keys))])
    return {
        key: answer(publication, key, row) if isinstance(row, Row) else None
        for key, row in zip(keys, found, strict=True)
    }


def unpublish(
    client: Client,
    endpoint: str,
    *,
    env: str = "production",
    store: OnlineStore | None = None,
) -> Publication | None:
    """Stop ``endpoint`` answering from published predictions and delete their rows."""
    publications = PublicationStore(client.registry.engine)
    publication, namespaces = publications.delete(env, endpoint)
    store = store if store is not None else client.features.store
    for namespace in namespaces:
        store.delete_view(namespace)
    return publication


def answer(publication: Publication, key: str, row: Row) -> dict[str, Any]:
    """What a lookup of ``key`` answers: ``predictions`` (the primary output), the other
    outputs by name, and where they came from."""
    body: dict[str, Any] = {"key": key}
    for index, name in enumerate(publication.outputs):
        body["predictions" if index == 0 else name] = row.values.get(name)
    body.update(
        model=publication.model,
        version=publication.version,
        computed_at=iso(publication.computed_at),
        run_id=publication.run_id,
        source="precomputed",
    )
    return body


def _publishable(manifest: Manifest) -> tuple[str, ...]:
    """The run's id columns, once it is known to be publishable."""
    if manifest.status != "succeeded":
        why = f": {manifest.error}" if manifest.error else ""
        raise Conflict(
            f"run {manifest.run_id} is {manifest.status}{why}; only a run that succeeded "
            "can be published",
            hint="finish the run (modelport batch predict ... --resume), then publish it",
        )
    id_columns = tuple(manifest.spec.get("id_columns") or ())
    if not id_columns:
        raise InvalidInput(
            f"run {manifest.run_id} has no id columns, so its predictions have no key to "
            "be looked up by",
            hint="rerun it with --id-column COLUMN (the column requests will carry)",
        )
    if not manifest.chunks:
        raise InvalidInput(
            f"run {manifest.run_id} wrote no rows; publishing it would leave the endpoint "
            "with no predictions",
            hint="check the run's input; unpublish explicitly to serve nothing",
        )
    return id_columns


def _same_model(client: Client, manifest: Manifest, endpoint: str, env: str) -> None:
    """Refuse a run of another model than the endpoint serves (if it is deployed)."""
    try:
        deployment = client.registry.get_deployment(env, endpoint)
    except NotFound:
        return
    served = sorted({v.model for v in deployment.spec.variants})
    if manifest.model not in served:
        raise Conflict(
            f"run {manifest.run_id} scored model {manifest.model!r}, but {env}/{endpoint} "
            f"serves {served}",
            hint=f"publish it to an endpoint that serves {manifest.model!r}",
        )


def _finished(manifest: Manifest) -> datetime:
    if manifest.finished_at is None:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(manifest.finished_at)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _parts(manifest: Manifest, output: str | Path) -> tuple[pafs.FileSystem, list[str]]:
    from modelport.batch.output import Output

    folder = Output(str(output))
    fs = folder.fs
    parts = [folder.path(c.file) for c in sorted(manifest.chunks, key=lambda c: c.index)]
    missing = [info.path for info in fs.get_file_info(parts) if not info.is_file]
    if missing:
        raise NotFound(
            f"run {manifest.run_id}'s part(s) {missing[:3]} do not exist",
            hint="publish the folder the run wrote, whole",
        )
    return fs, parts


def _write(
    store: OnlineStore,
    namespace: str,
    files: tuple[pafs.FileSystem, list[str]],
    id_columns: tuple[str, ...],
    computed_at: datetime,
) -> tuple[tuple[str, ...], int]:
    """Every part's rows into ``namespace``; the output columns and the rows read."""
    fs, parts = files
    outputs: tuple[str, ...] | None = None
    rows = 0
    for path in parts:
        with fs.open_input_file(path) as handle:
            found, written = _write_part(store, namespace, handle, path, id_columns, computed_at)
        if outputs is not None and found != outputs:
            raise InvalidInput(
                f"{path} has the output columns {list(found)}, other parts {list(outputs)}"
            )
        outputs, rows = found, rows + written
    return outputs or (), rows


def _write_part(
    store: OnlineStore,
    namespace: str,
    handle: Any,
    path: str,
    id_columns: tuple[str, ...],
    computed_at: datetime,
) -> tuple[tuple[str, ...], int]:
    """One part's rows into ``namespace``, `WRITE_ROWS` at a time."""
    import pyarrow.parquet as pq

    reader = pq.ParquetFile(handle)
    names = reader.schema_arrow.names
    missing = [c for c in id_columns if c not in names]
    if missing:
        raise InvalidInput(f"{path} has no id column(s) {missing}", hint=f"it has {names}")
    outputs = tuple(n for n in names if n not in id_columns and n not in PROVENANCE)
    event_ts = computed_at.timestamp()
    rows = 0
    for batch in reader.iter_batches(batch_size=WRITE_ROWS, columns=[*id_columns, *outputs]):
        keys = _keys([batch.column(c).to_pylist() for c in id_columns], id_columns, path)
        values = [batch.column(n).to_pylist() for n in outputs]
        store.write(
            namespace,
            {
                key: (dict(zip(outputs, row, strict=True)), event_ts)
                for key, *row in zip(keys, *values, strict=True)
            },
        )
        rows += batch.num_rows
    return outputs, rows


def _keys(columns: list[list[Any]], id_columns: tuple[str, ...], path: str) -> list[str]:
    for name, column in zip(id_columns, columns, strict=True):
        if None in column:
            raise InvalidInput(
                f"{path} has a null in id column {name!r} (row {column.index(None)} of a "
                "batch); a prediction without a key cannot be looked up",
                hint="drop or fill rows without an id before scoring",
            )
    return [key_text(row) for row in zip(*columns, strict=True)]


def _retire(
    store: OnlineStore,
    publications: PublicationStore,
    publication: Publication,
    stale: Sequence[str],
) -> None:
    """Delete the rows of runs no longer published (unless one was published again)."""
    env, endpoint = publication.environment, publication.endpoint
    for namespace in stale:
        now = publications.current(env, endpoint)
        if now is not None and now.namespace == namespace:
            continue
        try:
            store.delete_view(namespace)
        except ModelportError as exc:  # the next publish deletes it
            log.warning("could not delete the retired predictions %s: %s", namespace, exc)
            continue
        publications.retired(env, endpoint, namespace)


def _delete_quietly(store: OnlineStore, namespace: str) -> None:
    try:
        store.delete_view(namespace)
    except ModelportError as exc:
        log.warning("could not delete the partly written predictions %s: %s", namespace, exc)


def key_columns(keys: Sequence[str], publication: Publication | None) -> tuple[str, ...]:
    """The request fields a precomputed endpoint's key is read from: the deployment's
    ``keys`` when it names them, else the published run's id columns."""
    if keys:
        return tuple(keys)
    return publication.id_columns if publication is not None else ()
