"""``imagen backends``, ``imagen plugins`` and ``imagen styles``: what is installed and set up."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from imagen.cli import State


def _table(rows: Sequence[Sequence[object]], header: Sequence[str], indent: str = "") -> None:
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo((indent + line).rstrip())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def backends(state: State, as_json: bool) -> None:
    """List installed backend types and the configured backend instances."""
    from imagen.registry import backend_types

    types = backend_types()
    config = state.config()
    instances = [
        {
            "name": b.name,
            "type": b.type,
            "default": b.name == config.default_backend,
            "installed": b.type in types,
            "file": str(b.file) if b.file else None,
        }
        for b in config.backends.values()
    ]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "types": [
                        {
                            "name": t.name,
                            "distribution": t.distribution,
                            "version": t.version,
                            "plugin": t.plugin,
                            "summary": t.summary,
                        }
                        for t in types.values()
                    ],
                    "instances": instances,
                },
                indent=2,
            )
        )
        return
    click.echo("Installed backend types:")
    _table(
        [
            (t.name, f"{t.distribution or t.plugin} {t.version or ''}".strip(), t.summary)
            for t in types.values()
        ],
        ("TYPE", "FROM", "DESCRIPTION"),
        indent="  ",
    )
    click.echo(
        "\nConfigured instances"
        + (f" ({config.file}):" if config.file else " (built-in defaults):")
    )
    _table(
        [
            (
                ("* " if i["default"] else "  ") + i["name"],
                i["type"],
                "" if i["installed"] else "type not installed",
            )
            for i in instances
        ],
        ("  NAME", "TYPE", ""),
        indent="  ",
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def plugins(as_json: bool) -> None:
    """List loaded plugins, their versions and the hooks they implement."""
    from imagen.plugins import load_failures, plugin_infos

    infos = plugin_infos()
    failures = load_failures()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "plugins": [
                        {
                            "name": p.name,
                            "distribution": p.distribution,
                            "version": p.version,
                            "hooks": list(p.hooks),
                        }
                        for p in infos
                    ],
                    "failed": [
                        {"name": f.name, "distribution": f.distribution, "reason": f.reason}
                        for f in failures
                    ],
                },
                indent=2,
            )
        )
        return
    _table(
        [
            (
                p.name,
                p.distribution or "(registered at runtime)",
                p.version or "",
                ", ".join(p.hooks),
            )
            for p in infos
        ],
        ("NAME", "DISTRIBUTION", "VERSION", "HOOKS"),
    )
    if failures:
        click.echo(f"\n{len(failures)} plugin(s) failed to load (see the lines above).")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def styles(state: State, as_json: bool) -> None:
    """List the style presets of imagen.yaml."""
    config = state.config()
    presets = list(config.styles.values())
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": s.name,
                        "description": s.description,
                        "suffix": s.suffix,
                        "negative_suffix": s.negative_suffix,
                        "width": s.width,
                        "height": s.height,
                        "steps": s.steps,
                    }
                    for s in presets
                ],
                indent=2,
            )
        )
        return
    if not presets:
        where = config.file or "imagen.yaml (run `imagen init` to write one)"
        click.echo(f"No styles configured; add them under styles: in {where}.")
        return
    _table(
        [
            (
                s.name,
                f"{s.width}x{s.height}" if s.width else "",
                s.steps or "",
                s.description or s.suffix,
            )
            for s in presets
        ],
        ("NAME", "SIZE", "STEPS", "ADDS"),
    )
