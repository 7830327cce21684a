"""Declarative config: `modelport.yaml` models and deployments, planned then applied.

Example::

    from modelport.config import apply, plan_file

    plan = plan_file(client, "modelport.yaml")
    print(plan.render())
    apply(client, plan)
"""

from modelport.config.plan import ApplyResult, Change, Plan, apply
from modelport.config.planner import plan, plan_file
from modelport.config.schema import ConfigFile, SourceMap, load_config

__all__ = [
    "ApplyResult",
    "Change",
    "ConfigFile",
    "Plan",
    "SourceMap",
    "apply",
    "load_config",
    "plan",
    "plan_file",
]
