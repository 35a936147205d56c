"""``imagen models [BACKEND]``: what each backend can use, as its upstream lists it."""

from __future__ import annotations

import json

import click

from imagen.cli import State, fail, one_line
from imagen.cli.completion import complete_backend


@click.command()
@click.argument("backend", required=False, shell_complete=complete_backend)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
def models(state: State, backend: str | None, as_json: bool) -> None:
    """List what BACKEND (default: every configured one) can use.

    ComfyUI: the checkpoints, diffusion models, LoRAs and VAEs on the server; Replicate:
    the model's versions; OpenAI: the image models the key may use. The one in use is
    marked *. Each upstream is asked, with calls that cost nothing.
    """
    from imagen import secrets
    from imagen.errors import ImagenError
    from imagen.registry import build_backend

    config = state.config()
    names = [backend] if backend else list(config.backends)
    found: dict[str, list[dict[str, object]]] = {}
    errors: dict[str, str] = {}
    for name in names:
        slice_ = config.backend(name)
        built = build_backend(slice_)
        try:
            if not built.supports_models:
                errors[name] = f"backend type {slice_.type} cannot list its models"
                continue
            listed = built.models()
        except ImagenError as exc:
            if backend:
                raise
            errors[name] = one_line(secrets.redact(str(exc)))
            continue
        finally:
            built.close()
        found[name] = [
            {"name": m.name, "kind": m.kind, "description": m.description, "current": m.current}
            for m in listed
        ]
    if as_json:
        click.echo(json.dumps({"backends": found, "errors": errors}, indent=2))
    else:
        for name, listed_models in found.items():
            click.echo(f"{name} ({config.backend(name).type}):")
            width = max((len(str(m["kind"])) for m in listed_models), default=0)
            for m in listed_models:
                mark = "*" if m["current"] else " "
                line = f"  {mark} {m['kind']!s:<{width}}  {m['name']}"
                click.echo(line + (f"  ({m['description']})" if m["description"] else ""))
            if not listed_models:
                click.echo("  (nothing listed)")
        for name, message in errors.items():
            click.echo(f"imagen: {name}: {message}", err=True)
    if errors and (backend or not found):
        fail(f"{len(errors)} backend(s) could not list their models", 5)
