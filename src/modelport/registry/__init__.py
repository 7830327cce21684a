"""The model registry: models, versions, aliases, deployments (see `store.Registry`)."""

from modelport.registry.entities import (
    Deployment,
    DeploymentEvent,
    DeploymentSpec,
    Model,
    ModelVersion,
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
    "ServingOptions",
    "Variant",
]
