"""What every route reaches through ``request.app.state.modelport``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from modelport.client import Client
from modelport.serving.dataplane import DataPlane
from modelport.settings import Settings

if TYPE_CHECKING:
    from modelport.features.online import OnlineStore
    from modelport.monitoring.labels import LabelStore


@dataclass
class AppState:
    settings: Settings
    client: Client
    plane: DataPlane
    #: Delayed labels (``POST /v1/feedback``); None on a server that takes none.
    labels: LabelStore | None = None
    #: Build `labels` on first use: a worker that never takes a label never imports
    #: what the store needs (pandas, DuckDB).
    lazy_labels: bool = False

    def label_store(self) -> LabelStore | None:
        if self.labels is None and self.lazy_labels:
            from modelport.monitoring.labels import LabelStore

            self.labels = LabelStore(self.settings, registry=self.client.registry)
        return self.labels

    @property
    def online_store(self) -> OnlineStore:
        """The online feature store, opened on first use; the feature routes and the
        data plane's enrichment share it (the data plane closes it)."""
        return self.plane.enricher.store


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.modelport
    return state
