"""The Python API: register, alias, deploy and call models, on the local registry.

The CLI and the HTTP control routes are thin layers over this class.

Example::

    import modelport
    client = modelport.Client()
    mv = client.register_model("fraud", "fraud.skops", owner="ana@example.com",
                               sample_input=train_frame.head(500))
    client.deploy("fraud", f"models:/fraud/{mv.version}", env="production")
"""

from __future__ import annotations

import functools
import getpass
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.artifacts import ArtifactRef, LocalArtifactStore
from modelport.errors import (
    InvalidInput,
    ModelportError,
    NotFound,
    UntrustedArtifact,
)
from modelport.profile import compute_profile
from modelport.registry import (
    Deployment,
    DeploymentEvent,
    DeploymentSpec,
    Model,
    ModelVersion,
    Registry,
    ServingOptions,
)
from modelport.registry.entities import Precomputed
from modelport.runtimes import detect_flavor, get_runtime, needs_trust, save_model
from modelport.runtimes.base import LoadContext, Prediction, Runtime
from modelport.runtimes.loading import load_runtime
from modelport.safepaths import archive_stem, extract_archive, is_archive
from modelport.settings import Settings
from modelport.signature import (
    Columns,
    ColumnType,
    OutputSpec,
    Signature,
    column_type_of,
    sample_frame,
)
from modelport.uri import ModelRef, check_name, parse_model_uri

if TYPE_CHECKING:
    import pandas as pd

    from modelport.features.api import Features
    from modelport.monitoring.labels import LabelStore
    from modelport.registry.keys import KeyStore
    from modelport.registry.rollouts import Rollout
    from modelport.rollouts import Rollouts

REFERENCE_ROWS = 1000
REFERENCE_NAME = "reference.parquet"
#: The version tag that records when a version was trusted to run code (ISO time, UTC);
#: ``trusted_by`` records who.
TRUSTED_AT_TAG = "modelport.trusted_at"


def output_specs(
    prediction: Prediction | None, task: str, classes: list[Any] | None
) -> list[OutputSpec]:
    """Describe a version's outputs from what it returned on the sample (or its task)."""
    if task == "classification" and classes is not None:
        label_type: ColumnType = "string" if any(isinstance(c, str) for c in classes) else "long"
        return [
            OutputSpec("label", label_type),
            OutputSpec("probabilities", "double", (-1, len(classes))),
        ]
    if prediction is None:
        return [OutputSpec("prediction", "double")]
    return [
        OutputSpec(name, column_type_of(np.asarray(arr).dtype), (-1, *np.asarray(arr).shape[1:]))
        for name, arr in prediction.outputs.items()
    ]


def frame_columns(signature: Signature, frame: pd.DataFrame) -> Columns:
    """Rows of a DataFrame checked against a signature, as a request's would be."""
    return signature.coerce({c: frame[c].to_numpy() for c in frame})


class Client:
    """Register, find, alias and deploy model versions."""

    def __init__(
        self, settings: Settings | None = None, *, registry: Registry | None = None
    ) -> None:
        self.settings = settings or Settings()
        self.registry = registry or Registry(self.settings.database_url)
        self.artifacts = LocalArtifactStore(self.settings.artifacts_path)

    @property
    def user(self) -> str:
        return self.settings.user or getpass.getuser()

    def close(self) -> None:
        if "features" in self.__dict__:
            self.features.close()
        self.registry.close()

    @functools.cached_property
    def features(self) -> Features:
        """Feature views: materialize, push, online values, point-in-time history."""
        from modelport.features.api import Features

        return Features(self)

    @property
    def keys(self) -> KeyStore:
        """API keys: create (the key is returned once), list, get, revoke."""
        from modelport.registry.keys import KeyStore

        return KeyStore(self.registry.engine)

    # -- registration --------------------------------------------------------

    def register_model(
        self,
        name: str,
        path: str | Path,
        *,
        flavor: str | None = None,
        owner: str | None = None,
        team: str | None = None,
        sample_input: Any = None,
        signature: Signature | Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
        trust: bool = False,
    ) -> ModelVersion:
        """Store an artifact and record it as the next version of ``name``.

        The artifact is loaded (and run on ``sample_input`` when given) before anything
        is recorded, so a corrupt or incompatible file never becomes a version. A model
        folder may come as a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive: it is
        unpacked with every member checked (`modelport.safepaths.extract_archive`).
        """
        check_name("model", name)
        if is_archive(Path(path)):
            with tempfile.TemporaryDirectory() as tmp:
                unpacked = Path(tmp) / archive_stem(Path(path))
                unpacked.mkdir()
                folder = extract_archive(Path(path), unpacked)
                return self.register_model(
                    name,
                    folder,
                    flavor=flavor,
                    owner=owner,
                    team=team,
                    sample_input=sample_input,
                    signature=signature,
                    metrics=metrics,
                    tags=tags,
                    description=description,
                    trust=trust,
                )
        if tags and TRUSTED_AT_TAG in tags:
            raise InvalidInput(
                f"the tag {TRUSTED_AT_TAG!r} is set by Modelport when a version is trusted",
                hint="choose another tag name",
            )
        path = Path(path)
        if not path.exists():
            raise InvalidInput(f"artifact {path} does not exist", hint="check the path")
        flavor = flavor or detect_flavor(path)
        if needs_trust(path, flavor) and not trust:
            raise UntrustedArtifact(
                f"{path.name} is a {flavor} artifact whose loading runs arbitrary Python code",
                hint="check where it comes from, then register it with --trust "
                "(trust=True), or save the model in a safe format (skops, ONNX, native "
                "XGBoost/LightGBM)",
            )
        ref = self.artifacts.put(path)
        frame = sample_frame(sample_input) if sample_input is not None else None
        sig = self._signature(signature, frame)
        if frame is not None:
            absent = [c for c in sig.column_names if c not in frame.columns]
            if absent:
                raise InvalidInput(
                    f"the sample input lacks the signature's column(s) {absent}",
                    hint="give a sample with every input column, or fix the signature",
                )
            frame = frame[sig.column_names]
        columns = frame_columns(sig, frame) if frame is not None else None
        runtime = get_runtime(flavor)
        runtime.load(
            LoadContext(
                path=self.artifacts.local_path(ref),
                signature=sig,
                trusted=trust,
                num_threads=self.settings.runtime_threads,
            )
        )
        try:
            prediction = runtime.predict(columns) if columns is not None else None
            task = str(getattr(runtime, "task", "other"))
            classes = getattr(runtime, "classes", None)
            classes = [_plain(c) for c in classes] if classes is not None else None
        finally:
            runtime.unload()
        sig = sig.with_outputs(output_specs(prediction, task, classes))
        compiled = self._compile(flavor, ref, sig, columns, trust)
        profile, sample_sha = None, None
        if frame is not None:
            sample = frame.head(REFERENCE_ROWS)
            outputs = (
                {k: v[: len(sample)] for k, v in prediction.outputs.items()} if prediction else None
            )
            profile = compute_profile(sample, outputs)
            sample_sha = self._store_sample(sample).sha256
        return self.registry.create_version(
            name,
            artifact=ref,
            flavor=flavor,
            signature=sig,
            task=task,
            classes=classes,
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            tags={k: str(v) for k, v in (tags or {}).items()}
            | ({TRUSTED_AT_TAG: datetime.now(UTC).isoformat()} if trust else {}),
            description=description,
            owner=owner,
            team=team,
            profile=profile,
            sample_sha256=sample_sha,
            trusted=trust,
            compiled=compiled,
            created_by=self.user,
        )

    def _compile(
        self,
        flavor: str,
        ref: ArtifactRef,
        sig: Signature,
        sample: Columns | None,
        trust: bool,
    ) -> dict[str, Any]:
        """Convert to ONNX and verify on the sample; store the result as a derived artifact."""
        from modelport.compile import compile_model

        if not self.settings.compile_models:
            return {"status": "skipped", "reason": "compiling is off (MODELPORT_COMPILE_MODELS)"}
        if sample is None:
            return {"status": "skipped", "reason": "no sample input to verify a compiled form on"}
        with tempfile.TemporaryDirectory() as tmp:
            result = compile_model(
                flavor, self.artifacts.local_path(ref), sig, sample, Path(tmp), trusted=trust
            )
            info = result.to_dict()
            info.pop("path", None)
            if result.path is not None:
                stored = self.artifacts.put(result.path)
                info.update(sha256=stored.sha256, name=stored.name, size=stored.size)
        return info

    def _signature(
        self, signature: Signature | Mapping[str, Any] | None, frame: pd.DataFrame | None
    ) -> Signature:
        if isinstance(signature, Signature):
            return signature
        if signature is not None:
            return Signature.from_dict(signature)
        if frame is None:
            raise InvalidInput(
                "no signature and no sample input: Modelport cannot tell which columns "
                "the model takes",
                hint="pass sample_input (a few training rows, e.g. --sample data.csv) "
                "or a signature",
            )
        return Signature.infer(frame)

    def _store_sample(self, sample: pd.DataFrame) -> ArtifactRef:

        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / REFERENCE_NAME
            sample.to_parquet(target, index=False)
            return self.artifacts.put(target)

    def reference_sample(self, version: ModelVersion) -> pd.DataFrame | None:
        """The training rows stored with a version at registration, if any."""
        import pandas as pd

        if version.sample_sha256 is None:
            return None
        ref = ArtifactRef(sha256=version.sample_sha256, name=REFERENCE_NAME, size=0)
        self.artifacts.verify(ref, owner=f"the reference sample of {version.uri}")
        return pd.read_parquet(self.artifacts.local_path(ref))

    def log_model(
        self,
        model: Any,
        name: str,
        *,
        sample_input: Any = None,
        **kwargs: Any,
    ) -> ModelVersion:
        """Save an in-memory model in its safe format and register it (see `register_model`)."""
        import pandas as pd

        names = getattr(model, "feature_names_in_", None)
        if sample_input is not None and not isinstance(sample_input, pd.DataFrame | Mapping):
            sample_input = sample_frame(sample_input, list(names) if names is not None else None)
        with tempfile.TemporaryDirectory() as tmp:
            saved = save_model(model, Path(tmp))
            classes = saved.extra.get("classes")
            if classes is not None and classes != list(range(len(classes))):
                raise InvalidInput(
                    f"{type(model).__name__} was trained on the labels {classes}, but its "
                    "native file keeps only class indices 0..k-1",
                    hint="encode the labels as 0..k-1 before training (e.g. LabelEncoder) "
                    "and map them back in the application",
                )
            return self.register_model(
                name, saved.path, flavor=saved.flavor, sample_input=sample_input, **kwargs
            )

    # -- lookup --------------------------------------------------------------

    def get_model(self, name: str) -> Model:
        return self.registry.get_model(name)

    def list_models(self) -> list[Model]:
        return self.registry.list_models()

    def list_versions(self, name: str) -> list[ModelVersion]:
        return self.registry.list_versions(name)

    def get_version(self, uri: str | ModelRef) -> ModelVersion:
        """The version a URI names (``models:/fraud/3``, ``models:/fraud@champion``)."""
        ref = parse_model_uri(uri) if isinstance(uri, str) else uri
        return self.registry.resolve(ref)

    def trust_version(self, uri: str | ModelRef, *, revoke: bool = False) -> ModelVersion:
        """Accept (or, with ``revoke``, withdraw) that loading a version runs code.

        Records who (``trusted_by``) and when (the ``modelport.trusted_at`` tag). The
        artifact's hash is checked first, so trust is never given to changed bytes. A
        revoked version no longer loads (servers refuse it at their next load).
        """
        version = self.get_version(uri)
        if not revoke:
            self.artifacts.verify(version.artifact, owner=version.uri)
        tags = {k: v for k, v in version.tags.items() if k != TRUSTED_AT_TAG}
        if not revoke:
            tags[TRUSTED_AT_TAG] = datetime.now(UTC).isoformat()
        by = None if revoke else self.user
        return self.registry.set_trust(version.name, version.version, by=by, tags=tags)

    def set_alias(self, name: str, alias: str, version: int) -> None:
        self.registry.set_alias(name, alias, version, actor=self.user)

    def delete_alias(self, name: str, alias: str) -> None:
        self.registry.delete_alias(name, alias)

    # -- deployment ----------------------------------------------------------

    def deploy(
        self,
        endpoint: str,
        uri: str,
        *,
        env: str = "production",
        reason: str | None = None,
        serving: ServingOptions | None = None,
        features: Sequence[str] | None = None,
        precomputed: Precomputed | bool | None = None,
    ) -> Deployment:
        """Point ``endpoint`` in ``env`` at the version ``uri`` names (aliases resolve now),
        at once and alone. An existing deployment's routing, rollout policy, feature
        views and precomputed mode are kept (``features`` replaces the views;
        ``precomputed`` sets the mode: True keeps it or turns it on with its defaults,
        False turns it off); it stops following an alias (a hand-picked version wins)."""
        version = self.get_version(uri)
        spec = DeploymentSpec.single(version.name, version.version, source=uri, serving=serving)
        try:
            current = self.registry.get_deployment(env, endpoint).spec
        except NotFound:
            current = None
        if current is not None:
            spec = replace(
                spec,
                routing=current.routing,
                rollout=current.rollout,
                features=current.features,
                precomputed=current.precomputed,
            )
        if precomputed is False:
            spec = replace(spec, precomputed=None)
        elif precomputed is True:
            spec = replace(spec, precomputed=spec.precomputed or Precomputed())
        elif precomputed is not None:
            spec = replace(spec, precomputed=precomputed)
        if features is not None:
            from modelport.registry.features import FeatureViewStore

            views = FeatureViewStore(self.registry.engine)
            for name in features:
                views.get(name)  # NotFound, naming the views there are
            spec = replace(spec, features=tuple(features))
        return self.registry.set_deployment(env, endpoint, spec, actor=self.user, reason=reason)

    def undeploy(self, endpoint: str, *, env: str = "production") -> None:
        self.registry.delete_deployment(env, endpoint, actor=self.user)

    def deployments(self, env: str | None = None) -> list[Deployment]:
        return self.registry.list_deployments(env)

    def get_deployment(self, endpoint: str, *, env: str = "production") -> Deployment:
        return self.registry.get_deployment(env, endpoint)

    def history(self, endpoint: str, *, env: str = "production") -> list[DeploymentEvent]:
        return self.registry.history(env, endpoint)

    def rollouts(self, env: str = "production") -> Rollouts:
        """Rollouts of ``env``: start, status, pause, resume, promote, abort, rollback."""
        from modelport.rollouts import Rollouts

        return Rollouts(self, environment=env)

    def rollback(
        self, endpoint: str, *, env: str = "production", reason: str | None = None
    ) -> Deployment:
        """Return ``endpoint`` to what it served before its last change, now (an active
        rollout is aborted back to where it started)."""
        return self.rollouts(env).rollback(endpoint, reason=reason)

    def promote_rollout(
        self, endpoint: str, *, source: str = "staging", target: str = "production"
    ) -> Rollout:
        """Start a rollout in ``target`` to the version ``source`` serves for ``endpoint``
        (with ``target``'s rollout policy)."""
        primary = self.registry.get_deployment(source, endpoint).spec.primary
        return self.rollouts(target).start(
            endpoint,
            primary.uri,
            reason=f"promoted from {source}",
        )

    def promote(
        self, endpoint: str, *, source: str = "staging", target: str = "production"
    ) -> Deployment:
        """Make ``target`` serve exactly what ``source`` serves for ``endpoint``, at once."""
        current = self.registry.get_deployment(source, endpoint)
        return self.registry.set_deployment(
            target,
            endpoint,
            current.spec,
            action="promote",
            actor=self.user,
            reason=f"promoted from {source} (revision {current.revision})",
        )

    # -- delayed labels --------------------------------------------------------

    def feedback(
        self, prediction_ids: Sequence[str], labels: Sequence[Any], *, source: str = "api"
    ) -> int:
        """Attach ground truth to predictions (ids from predict responses); durable on return.

        Returns the number of labels recorded; the latest label of an id wins.
        """
        return self._label_store().add(prediction_ids, labels, source=source)

    def import_labels(
        self,
        path: str | Path,
        *,
        id_column: str = "prediction_id",
        label_column: str = "label",
    ) -> int:
        """Import labels from a CSV or Parquet file (all rows, or none on an error)."""
        return self._label_store().import_file(path, id_column=id_column, label_column=label_column)

    def performance(
        self,
        endpoint: str,
        *,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        bucket: str | None = None,
    ) -> list[dict[str, Any]]:
        """Metrics per model version of ``endpoint`` from its labelled predictions.

        ``since`` and ``until`` are datetimes, ISO times or durations back from now
        (``"7d"``); ``bucket`` (``"1d"``) also groups by when predictions were answered.
        """
        from modelport.monitoring.labels import parse_time

        start = parse_time(since) if isinstance(since, str) else since
        end = parse_time(until) if isinstance(until, str) else until
        return self._label_store().performance(endpoint, since=start, until=end, bucket=bucket)

    def _label_store(self) -> LabelStore:
        from modelport.monitoring.labels import LabelStore

        return LabelStore(self.settings, registry=self.registry)

    # -- in-process prediction -----------------------------------------------

    def load(self, uri: str) -> tuple[ModelVersion, Runtime]:
        """Load a version in this process (hash checked), e.g. for notebooks and tests."""
        version = self.get_version(uri)
        runtime = load_runtime(version, self.artifacts, threads=self.settings.runtime_threads)
        return version, runtime

    def predict(self, uri: str, data: Any) -> Prediction:
        """Predict with a registered version in this process; input is checked like a request."""
        version, runtime = self.load(uri)
        try:
            frame = sample_frame(data, version.signature.column_names)
            columns = frame_columns(version.signature, frame)
            return runtime.predict(columns)
        finally:
            runtime.unload()


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def log_model(model: Any, name: str, *, sample_input: Any = None, **kwargs: Any) -> ModelVersion:
    """Register an in-memory model with a default `Client` (settings from the environment)."""
    client = Client()
    try:
        return client.log_model(model, name, sample_input=sample_input, **kwargs)
    finally:
        client.close()


__all__ = ["Client", "ModelportError", "NotFound", "log_model"]
