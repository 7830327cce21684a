"""What every route reaches through ``request.app.state.modelport``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from modelport.client import Client
from modelport.serving.dataplane import DataPlane
from modelport.settings import Settings

if TYPE_CHECKING:
    from modelport.monitoring.labels import LabelStore


@dataclass
class AppState:
    settings: Settings
    client: Client
    plane: DataPlane
    #: Delayed labels (``POST /v1/feedback``); None on a server that takes none.
    labels: LabelStore | None = None


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.modelport
    return state
