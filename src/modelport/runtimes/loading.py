"""Which form of a model version to run, and loading it from the artifact store.

Kept apart from `modelport.client` so that processes which only score (batch workers)
load a model without importing the registry's database layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from modelport.artifacts import ArtifactRef, LocalArtifactStore
from modelport.errors import ArtifactError
from modelport.runtimes import get_runtime
from modelport.runtimes.base import LoadContext, Runtime

if TYPE_CHECKING:
    from modelport.registry.entities import ModelVersion

RuntimeKind = Literal["native", "compiled"]


def compiled_artifact(version: ModelVersion) -> ArtifactRef | None:
    """The verified ONNX form of a version, if registration produced one."""
    info = version.compiled or {}
    if info.get("status") != "compiled":
        return None
    return ArtifactRef(sha256=info["sha256"], name=info["name"], size=int(info.get("size", 0)))


def runtime_kind(version: ModelVersion, choice: str) -> RuntimeKind:
    """Which form of ``version`` to serve for a deployment's ``runtime`` choice."""
    if choice == "native":
        return "native"
    if choice == "compiled" or compiled_artifact(version) is not None:
        return "compiled"
    return "native"


def load_runtime(
    version: ModelVersion,
    artifacts: LocalArtifactStore,
    *,
    kind: RuntimeKind = "native",
    threads: int = 1,
    verify: bool = True,
) -> Runtime:
    """Load a version's runtime (native or compiled) from the store, checking its hash first."""
    ref, flavor = version.artifact, version.flavor
    if kind == "compiled":
        compiled = compiled_artifact(version)
        if compiled is None:
            reason = (version.compiled or {}).get("reason", "it was registered before compiling")
            raise ArtifactError(
                f"{version.uri} has no compiled form: {reason}",
                hint="deploy it with runtime native (or auto)",
            )
        ref, flavor = compiled, "onnx"
    if verify:
        owner = version.uri if kind == "native" else f"{version.uri} (compiled form)"
        artifacts.verify(ref, owner=owner)
    runtime = get_runtime(flavor)
    runtime.load(
        LoadContext(
            path=artifacts.local_path(ref),
            signature=version.signature,
            trusted=version.trusted,
            num_threads=threads,
        )
    )
    return runtime
