"""Control routes: register versions, set aliases, deploy and promote, read history.

Off the hot path, so they keep FastAPI's conveniences (pydantic bodies, OpenAPI).
Every route calls `modelport.Client`, the same core the CLI uses.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, File, Form, Path, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from modelport.config.schema import ServingSpec
from modelport.errors import Forbidden, InvalidInput
from modelport.safepaths import upload_name
from modelport.serving.http import json_response
from modelport.serving.state import app_state

if TYPE_CHECKING:
    import pandas as pd

router = APIRouter(prefix="/v1", tags=["control"])

#: Largest version number (the registry stores it as a 32-bit integer): larger ones are
#: refused with a 400 before the database sees them.
MAX_VERSION = 2**31 - 1


class AliasBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(description="Version number the alias points to.", ge=1, le=MAX_VERSION)


class DeployBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="Model URI: models:/NAME/VERSION or models:/NAME@ALIAS.")
    reason: str | None = Field(default=None, description="Why, kept in the history.")
    serving: ServingSpec = Field(default_factory=ServingSpec, description="Runtime, batching.")


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    endpoint: str
    source: str = Field(default="staging", alias="from")
    target: str = Field(default="production", alias="to")


def _json_field(value: str | None, field: str) -> dict[str, Any] | None:
    """A form field holding a JSON object (or nothing)."""
    if not value:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"form field '{field}' is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise InvalidInput(
            f"form field '{field}' must be a JSON object, not {type(parsed).__name__}",
            hint=f'e.g. {field}={{"key": "value"}}',
        )
    return parsed


def _metrics(value: str | None) -> dict[str, float] | None:
    parsed = _json_field(value, "metrics")
    if parsed is None:
        return None
    bad = {k: v for k, v in parsed.items() if isinstance(v, bool) or not isinstance(v, int | float)}
    if bad:
        raise InvalidInput(
            f"form field 'metrics' must map names to numbers; not numbers: {bad}",
            hint='e.g. metrics={"auc": 0.91}',
        )
    return {k: float(v) for k, v in parsed.items()}


def _read_sample(path: FilePath) -> pd.DataFrame:
    import pandas as pd

    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:
        raise InvalidInput(f"could not read the sample file {path.name}: {exc}") from exc


@router.get("/models")
def list_models(request: Request) -> Response:
    """Every registered model."""
    return json_response({"models": [m.to_dict() for m in app_state(request).client.list_models()]})


@router.get("/models/{name}")
def get_model(name: str, request: Request) -> Response:
    return json_response(app_state(request).client.get_model(name).to_dict())


@router.get("/models/{name}/versions")
def list_versions(name: str, request: Request) -> Response:
    versions = app_state(request).client.list_versions(name)
    return json_response({"versions": [v.to_dict() for v in versions]})


@router.get("/models/{name}/versions/{version}")
def get_version(
    name: str, version: Annotated[int, Path(ge=1, le=MAX_VERSION)], request: Request
) -> Response:
    mv = app_state(request).client.registry.get_version(name, version)
    return json_response(mv.to_dict(with_profile=True))


@router.post("/models/{name}/versions", status_code=201)
def register_version(
    name: str,
    request: Request,
    artifact: Annotated[UploadFile, File(description="The model file.")],
    sample: Annotated[UploadFile | None, File(description="Training rows (CSV/Parquet).")] = None,
    flavor: Annotated[str | None, Form()] = None,
    owner: Annotated[str | None, Form()] = None,
    team: Annotated[str | None, Form()] = None,
    description: Annotated[str, Form()] = "",
    signature: Annotated[str | None, Form(description="Signature as JSON.")] = None,
    metrics: Annotated[str | None, Form(description="Training metrics as a JSON object.")] = None,
    tags: Annotated[str | None, Form(description="Tags as a JSON object.")] = None,
    trust: Annotated[bool, Form(description="Accept that loading runs code.")] = False,
) -> Response:
    """Register a new version from an uploaded artifact (multipart form): a model file,
    or a model folder as .tar.gz/.tgz/.tar/.zip (unpacked with every member checked)."""
    state = app_state(request)
    client = state.client
    if trust and not state.settings.http_trust:
        raise Forbidden(
            "this server does not register code-running artifacts over HTTP (trust=true)",
            hint="register it from the CLI (modelport models register --trust) or "
            "modelport.yaml, or start the server with MODELPORT_HTTP_TRUST=true",
        )
    with tempfile.TemporaryDirectory() as tmp:
        target = FilePath(tmp) / upload_name(artifact.filename, "model")
        with target.open("wb") as out:
            shutil.copyfileobj(artifact.file, out)
        frame = None
        if sample is not None:
            sample_path = FilePath(tmp) / ("sample-" + upload_name(sample.filename, "sample.csv"))
            with sample_path.open("wb") as out:
                shutil.copyfileobj(sample.file, out)
            frame = _read_sample(sample_path)
        mv = client.register_model(
            name,
            target,
            flavor=flavor,
            owner=owner,
            team=team,
            description=description,
            sample_input=frame,
            signature=_json_field(signature, "signature"),
            metrics=_metrics(metrics),
            tags=_json_field(tags, "tags"),
            trust=trust,
        )
    return json_response(mv.to_dict(), 201)


@router.put("/models/{name}/aliases/{alias}")
def set_alias(name: str, alias: str, body: AliasBody, request: Request) -> Response:
    """Point ``alias`` at a version (``models:/NAME@ALIAS``)."""
    client = app_state(request).client
    client.set_alias(name, alias, body.version)
    return json_response(client.get_model(name).to_dict())


@router.delete("/models/{name}/aliases/{alias}", status_code=204)
def delete_alias(name: str, alias: str, request: Request) -> Response:
    app_state(request).client.delete_alias(name, alias)
    return Response(status_code=204)


@router.get("/deployments")
def list_deployments(request: Request, environment: str | None = None) -> Response:
    """Every deployment, optionally of one environment."""
    deployments = app_state(request).client.deployments(environment)
    return json_response({"deployments": [d.to_dict() for d in deployments]})


@router.get("/deployments/{environment}/{endpoint}")
def get_deployment(environment: str, endpoint: str, request: Request) -> Response:
    return json_response(
        app_state(request).client.get_deployment(endpoint, env=environment).to_dict()
    )


@router.put("/deployments/{environment}/{endpoint}")
def deploy(environment: str, endpoint: str, body: DeployBody, request: Request) -> Response:
    """Serve a model version at ``endpoint`` in ``environment``."""
    client = app_state(request).client
    deployment = client.deploy(
        endpoint, body.model, env=environment, reason=body.reason, serving=body.serving.options()
    )
    return json_response(deployment.to_dict())


@router.delete("/deployments/{environment}/{endpoint}", status_code=204)
def undeploy(environment: str, endpoint: str, request: Request) -> Response:
    app_state(request).client.undeploy(endpoint, env=environment)
    return Response(status_code=204)


@router.get("/deployments/{environment}/{endpoint}/history")
def history(environment: str, endpoint: str, request: Request) -> Response:
    events = app_state(request).client.history(endpoint, env=environment)
    return json_response({"events": [e.to_dict() for e in events]})


@router.post("/promote")
def promote(body: PromoteBody, request: Request) -> Response:
    """Make ``to`` serve what ``from`` serves for an endpoint."""
    deployment = app_state(request).client.promote(
        body.endpoint, source=body.source, target=body.target
    )
    return json_response(deployment.to_dict())
