"""``imagen usage``: spend and counts over a period, from wherever usage records go."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import click

from imagen.cli import State
from imagen.cli.catalog import _table

_RELATIVE = re.compile(r"(\d+)([dhw])")


class _Moment(click.ParamType):
    """A date (``2026-11-01``), a date and time, or a span back from now (``7d``, ``12h``, ``2w``)."""

    name = "DATE"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        relative = _RELATIVE.fullmatch(text)
        if relative:
            amount, unit = int(relative[1]), relative[2]
            span = {
                "d": timedelta(days=amount),
                "h": timedelta(hours=amount),
                "w": timedelta(weeks=amount),
            }
            return datetime.now().astimezone() - span[unit]
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is not a date (2026-11-01), a time (2026-11-01T08:00) or a span (7d, 12h, 2w)",
                param,
                ctx,
            )
        return moment if moment.tzinfo else moment.astimezone()  # naive: local time


@click.command()
@click.option(
    "--since",
    type=_Moment(),
    default="30d",
    show_default=True,
    help="Start of the period (inclusive).",
)
@click.option(
    "--until", type=_Moment(), default=None, help="End of the period (exclusive); default: now."
)
@click.option(
    "--by",
    "group_by",
    type=click.Choice(["day", "backend", "model", "owner", "status"]),
    multiple=True,
    help="Group rows by these, in order (repeatable); default: day.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows and totals as JSON.")
@click.pass_obj
def usage(
    state: State, since: datetime, until: datetime | None, group_by: tuple[str, ...], as_json: bool
) -> None:
    """Show spend and counts per day, backend or model over a period.

    Costs are the adapters' own figures; generations without one are counted as
    unpriced, never guessed.
    """
    from imagen.plugins import get_plugin_manager
    from imagen.usage import summarize, usage_sink

    config = state.config()
    # The sink, and wherever else plugins say records were kept (the embedded database the
    # worker and imagen serve record to): every generation counts, wherever it ran.
    sinks = [usage_sink(config, reading=True)]
    for offered in get_plugin_manager().hook.imagen_usage_sources(config=config):
        sinks += list(offered)
    records = []
    try:
        for sink in sinks:
            records += sink.records(since, until)
    finally:
        for sink in sinks:
            sink.close()
    records.sort(key=lambda record: record.at)
    source = " and the ".join(sink.description for sink in sinks)
    by = list(group_by) or ["day"]
    rows = summarize(records, by)
    (total,) = summarize(records, []) or [
        {"generations": 0, "images": 0, "failed": 0, "cost_usd": 0.0, "unpriced": 0}
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "since": since.isoformat(),
                    "until": until.isoformat() if until else None,
                    "source": source,
                    "by": by,
                    "rows": rows,
                    "total": total,
                },
                indent=2,
            )
        )
        return
    end = until.strftime("%Y-%m-%d %H:%M") if until else "now"
    click.echo(f"Usage from {since:%Y-%m-%d %H:%M} to {end}, from the {source}:")
    if not rows:
        click.echo("  no generations in this period")
        return
    header = [*by, "generations", "images", "failed", "cost (USD)", "unpriced"]
    table = [
        [
            *(row[name] or "-" for name in by),
            row["generations"],
            row["images"],
            row["failed"],
            f"{row['cost_usd']:.4f}",
            row["unpriced"],
        ]
        for row in rows
    ]
    table.append(
        [
            "total",
            *[""] * (len(by) - 1),
            total["generations"],
            total["images"],
            total["failed"],
            f"{total['cost_usd']:.4f}",
            total["unpriced"],
        ]
    )
    _table(table, header, indent="  ")
