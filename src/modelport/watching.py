"""The Python API of watching: monitor reports, alert rules, evaluations, incidents.

The CLI (`modelport monitor|alerts|incidents`) and the HTTP routes call this; the
server's watch loop (`modelport.serving.watcher`) runs the same pieces on a schedule.

Example::

    watching = Watching(Client())
    report = watching.monitor("fraud", window="1h")
    for incident in watching.incidents(status="firing"):
        print(incident.title, incident.diagnosis["rollback_command"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport.alerting.prometheus import prometheus_rules
from modelport.alerting.rules import AlertRule
from modelport.alerting.watchconfig import WatchConfig, load_watch_config
from modelport.monitoring.logstore import LogStore
from modelport.monitoring.monitor import Monitor
from modelport.registry.watching import Incident, WatchStore

if TYPE_CHECKING:
    from modelport.alerting.engine import Evaluation
    from modelport.client import Client


class Watching:
    """Monitoring and alerting over one client's registry and prediction log."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.store = WatchStore(client.registry.engine)
        self.logs = LogStore(client.settings)

    def config(self) -> WatchConfig:
        """The applied `alerting:` document (defaults when none was applied)."""
        return load_watch_config(self.store)

    def rules(self) -> list[AlertRule]:
        """Every rule in force: the user's and the defaults they do not replace."""
        return self.config().rules()

    def export_prometheus(self) -> str:
        """The rules as a Prometheus alerting rules file."""
        return prometheus_rules(self.rules())

    def monitor(
        self,
        endpoint: str,
        *,
        environment: str | None = None,
        window: str | None = None,
        last: int | None = None,
    ) -> dict[str, Any]:
        """A monitor report for ``endpoint`` now (drift, quality, traffic, performance)."""
        monitor = Monitor(self.client, logs=self.logs)
        return monitor.run(
            endpoint,
            environment=environment,
            window=window,
            last=last,
            thresholds=self.config().thresholds(),
        )

    def evaluate(self, *, environment: str | None = None) -> Evaluation | None:
        """One watch round now: monitor every endpoint, keep the reports, evaluate alerts.

        Notifications are delivered before this returns. None when another process
        holds the environment's watch lease (a server is doing it).
        """
        from modelport.serving.watcher import Watcher

        settings = self.client.settings
        client = self.client
        if environment is not None and environment != settings.env:
            from modelport.client import Client

            client = Client(settings.model_copy(update={"env": environment}))
        watcher = Watcher(client)
        try:
            return watcher.tick()
        finally:
            watcher.watch.release_lease(watcher.lease, watcher.holder)
            watcher.engine.close()

    def incidents(
        self, *, environment: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[Incident]:
        return self.store.list_incidents(environment, status=status, limit=limit)

    def incident(self, incident_id: int) -> dict[str, Any]:
        """An incident with its diagnosis and every notification attempt."""
        incident = self.store.get_incident(incident_id)
        return incident.to_dict() | {"notifications": self.store.notifications(incident_id)}
