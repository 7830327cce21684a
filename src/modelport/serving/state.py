"""What every route reaches through ``request.app.state.modelport``."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from modelport.client import Client
from modelport.serving.dataplane import DataPlane
from modelport.settings import Settings


@dataclass
class AppState:
    settings: Settings
    client: Client
    plane: DataPlane


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.modelport
    return state
