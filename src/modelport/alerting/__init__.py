"""Alerting: rules over monitoring signals, routed to the model's owner with a diagnosis.

`model` holds the shared nouns (Alert, Notification); `rules` the conditions, `engine`
their evaluation, grouping and incidents, `routing` the Alertmanager-style route tree,
`notifiers` the receivers (webhook, Slack, PagerDuty, email), `diagnosis` what an
incident tells the on-call engineer, `prometheus` the same rules for Prometheus.
"""
