"""The model registry: models, versions, aliases, deployments (see `store.Registry`)."""

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
from modelport.registry.store import Registry

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
