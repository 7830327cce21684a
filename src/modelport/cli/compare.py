"""Comparison commands: ``shadow`` (each shadow variant against the live answers) and
``replay`` (logged requests against another environment's deployment).

Plain functions, registered on the top-level app by `modelport.cli.main`. Both read the
prediction log straight from ``MODELPORT_HOME`` (or ``MODELPORT_LOG_DIR``); no server is
needed, except for ``replay --url``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelport.cli.common import Ctx, emit, handled, out, table

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

#: Rows of the comparison table: (label, key in Comparison.to_dict()).
_FIGURES = (
    ("pairs", "pairs"),
    ("candidate failures", "failures"),
    ("candidate error rate", "candidate_error_rate"),
    ("disagreement", "disagreement"),
    ("label agreement", "agreement"),
    ("probabilities, mean abs diff", "probability_mad"),
    ("difference, mean", "mean_difference"),
    ("abs difference, mean", "mean_abs_difference"),
    ("abs difference, p50", "abs_difference_p50"),
    ("abs difference, p90", "abs_difference_p90"),
    ("abs difference, p99", "abs_difference_p99"),
    ("abs difference, max", "max_abs_difference"),
    ("live latency p50 (s)", "live_p50_s"),
    ("live latency p99 (s)", "live_p99_s"),
    ("candidate latency p50 (s)", "candidate_p50_s"),
    ("candidate latency p99 (s)", "candidate_p99_s"),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_comparison(title: str, comparison: dict[str, Any]) -> None:
    rows = [[label, _fmt(comparison.get(key))] for label, key in _FIGURES]
    shown = [r for r in rows if r[1] != "-" or r[0] in ("pairs", "disagreement")]
    out.print(table(f"{title} ({comparison.get('task')})", ["", "value"], shown))


def shadow(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint whose shadow variants to compare.")],
    since: Annotated[str, typer.Option(help="Duration back from now (1h) or ISO time.")] = "1h",
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="Environment (default: MODELPORT_ENV)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare each shadow variant of ENDPOINT with the live answers to the same requests."""
    from modelport.monitoring.comparison import shadow_report
    from modelport.monitoring.labels import parse_time
    from modelport.monitoring.logstore import LogStore

    c: Ctx = ctx.obj
    c.as_json = c.as_json or as_json
    environment = env or c.settings.env
    with handled():
        report = shadow_report(
            LogStore(c.settings),
            c.client.registry,
            endpoint,
            environment=environment,
            since=parse_time(since),
        )

    def render() -> None:
        head = f"{endpoint} ({environment}) since {report['since']}"
        if not report["shadows"]:
            out.print(f"{head}: no shadow variant is deployed", highlight=False)
            return
        out.print(f"{head}, live: {', '.join(report['live'])}", highlight=False)
        for row in report["shadows"]:
            render_comparison(f"shadow {row['uri']}", row)

    emit(c, report, render)


def replay(
    ctx: typer.Context,
    endpoint: Annotated[str, typer.Argument(help="Endpoint whose logged requests to replay.")],
    source: Annotated[
        str, typer.Option("--from", help="Environment whose logged requests are replayed.")
    ] = "production",
    target: Annotated[
        str, typer.Option("--to", help="Environment whose deployment answers them.")
    ] = "staging",
    window: Annotated[str, typer.Option(help="Requests logged in the last 1h, 30m, 7d ...")] = "1h",
    limit: Annotated[int, typer.Option(help="Most rows replayed (the newest).")] = 10_000,
    url: Annotated[
        str | None,
        typer.Option(help="Send them to the server at URL instead of predicting in process."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="MODELPORT_API_KEY",
            help="Key sent with --url to a server that asks for one (a predict key).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay requests logged in one environment against another's deployment, and
    compare the answers."""
    from modelport.replay import replay as run_replay

    c: Ctx = ctx.obj
    c.as_json = c.as_json or as_json
    with handled():
        report = run_replay(
            c.client,
            endpoint,
            source=source,
            target=target,
            window=window,
            limit=limit,
            url=url,
            api_key=api_key,
        ).to_dict()

    def render() -> None:
        out.print(
            f"replayed {report['rows']} rows ({report['requests']} requests) of {endpoint} "
            f"logged in {source} by {', '.join(report['source_versions'])} against "
            f"{target} ({report['target_version']}"
            + (f" at {url}" if url else ", in process")
            + f"): {_fmt(report['rows_per_s'])} rows/s in {report['batches']} batches",
            highlight=False,
        )
        render_comparison(f"{target} vs {source}", report["comparison"])

    emit(c, report, render)
