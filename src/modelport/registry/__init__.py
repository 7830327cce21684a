"""The model registry: models, versions, aliases, deployments (see `store.Registry`).

`Registry` is imported on first use, so that code which only handles the entities (a
batch worker unpickling a `ModelVersion`) does not load the database layer.
"""

from typing import TYPE_CHECKING, Any

from modelport.registry.entities import (
    Deployment,
    DeploymentEvent,
    DeploymentSpec,
    Model,
    ModelVersion,
    RolloutPolicy,
    Routing,
    ServingOptions,
    Variant,
)

if TYPE_CHECKING:
    from modelport.registry.store import Registry


def __getattr__(name: str) -> Any:
    if name == "Registry":
        from modelport.registry.store import Registry

        return Registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Deployment",
    "DeploymentEvent",
    "DeploymentSpec",
    "Model",
    "ModelVersion",
    "Registry",
    "RolloutPolicy",
    "Routing",
    "ServingOptions",
    "Variant",
]
