"""Regenerate the parts of docs/ that are derived from the code.

    hatch run python docs/generate.py          # rewrite the generated parts of docs/
    hatch run python docs/generate.py --check  # exit 1 if they are out of date (the tests do)

Generated text sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

DOCS = Path(__file__).resolve().parent


def _commands(group: click.Group, prefix: list[str]) -> list[tuple[list[str], click.Command]]:
    found: list[tuple[list[str], click.Command]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        found.append(([*prefix, name], command))
        if isinstance(command, click.Group):
            found += _commands(command, [*prefix, name])
    return found


def cli_reference() -> str:
    """``--help`` of every built-in command, as Markdown."""
    import imagen.cli

    root = imagen.cli.cli
    imagen.cli._register_builtin_commands()  # they load when used: load them all
    # Only imagen-core's own commands: a plugin documents its commands itself.
    own = [
        (path, c)
        for path, c in _commands(root, [])
        if c.callback is None or c.callback.__module__.startswith("imagen.cli")
    ]
    parts = []
    everything = dict(root.commands)
    root.commands = {name: everything[name] for name in everything if [name] in [p for p, _ in own]}
    try:
        for path, command in [([], root), *own]:
            name = " ".join(["imagen", *path])
            with click.Context(
                command, info_name=name, terminal_width=88, help_option_names=["-h", "--help"]
            ) as ctx:
                text = command.get_help(ctx)
            parts.append(f"### `{name}`\n\n```\n{text}\n```\n")
    finally:
        root.commands = everything  # the plugins' commands, registered in this process
    return "\n".join(parts)


def exit_codes() -> str:
    """The exit code table."""
    from imagen.cli import EXIT_CODES

    rows = "\n".join(f"| {code} | {meaning} |" for code, meaning in EXIT_CODES.items())
    return f"| code | meaning |\n|---|---|\n{rows}\n"


def job_endings() -> str:
    """How imagen jobs watch and submit --wait exit for each way a job can end."""
    from imagen_worker.watching import ENDINGS

    rows = "\n".join(f"| {meaning} | {code} |" for code, meaning in ENDINGS.values())
    return f"| the job | exit |\n|---|---|\n{rows}\n"


KINDS = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    dict: "mapping",
    list: "list",
}


def table(settings: dict[str, Any]) -> str:
    """A Markdown table of :class:`imagen.config.Setting` values."""
    rows = []
    for key, setting in settings.items():
        default = "—" if setting.default is None else f"`{json.dumps(setting.default)}`"
        kinds = setting.kind if isinstance(setting.kind, tuple) else (setting.kind,)
        kind = "number" if set(kinds) == {int, float} else " or ".join(KINDS[k] for k in kinds)
        rows.append(f"| `{key}` | {kind} | {default} | {setting.doc} |")
    return "| key | type | default | meaning |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"


def mock_keys() -> str:
    """The built-in backend's slice keys and options."""
    from imagen.backends import mock

    return (
        f"Slice keys:\n\n{table(mock.SLICE)}\nOptions (`--opt KEY=VALUE`):\n\n{table(mock.OPTIONS)}"
    )


def comfyui_keys() -> str:
    """The comfyui backend type's slice keys."""
    from imagen_comfyui.settings import SLICE

    return table(SLICE)


def replicate_keys() -> str:
    """The replicate type's slice keys, its families and its price table."""
    from imagen_replicate.mapping import FAMILIES
    from imagen_replicate.pricing import PRICES
    from imagen_replicate.settings import SLICE

    families = "\n".join(
        f"| `{f.name}` | {', '.join(f'{k} → `{v}`' for k, v in f.inputs.items())} | {f.size} | "
        f"{f.max_outputs} | {f.doc} |"
        for f in FAMILIES.values()
    )
    prices = "\n".join(
        f"| `{model}` | {f'${p.per_image} per image' if p.per_image else f'${p.per_second} per second'} |"
        for model, p in PRICES.items()
    )
    return (
        f"{table(SLICE)}\n### Families\n\n| family | inputs | size | images per prediction | "
        f"models |\n|---|---|---|---|---|\n{families}\n\n### Price table\n\n| model | price |\n"
        f"|---|---|\n{prices}\n"
    )


def openai_keys() -> str:
    """The openai type's slice keys and its price table."""
    from imagen_openai.models import PRICES
    from imagen_openai.settings import SLICE

    rows = []
    for model, (tokens, per_image) in PRICES.items():
        token_text = (
            f"${tokens.text_in} / ${tokens.image_in} / ${tokens.image_out}"
            if tokens
            else "— (priced per image)"
        )
        images = ", ".join(f"{q} ${a} / ${b}" for q, (a, b) in per_image.items())
        rows.append(f"| `{model}` | {token_text} | {images} |")
    return (
        f"{table(SLICE)}\n### Price table\n\n| model | per 1M tokens: text in / image in / "
        f"image out | per image: 1024x1024 / other sizes |\n|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )


def serve_keys() -> str:
    """The ``serve:`` section of imagen serve."""
    from imagen_worker.serve.settings import SERVE

    return table(SERVE)


def mcp_keys() -> str:
    """The ``mcp:`` section of imagen mcp."""
    from imagen_mcp.settings import MCP

    return table(MCP)


def _schema_type(schema: dict[str, Any]) -> str:
    """A short reading of a JSON schema: ``integer, 1 to 4``, ``one of: a, b``."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    parts = []
    for option in options:
        if "enum" in option or "const" in option:
            names = option.get("enum", [option.get("const")])
            parts.append("one of " + ", ".join(f"`{name}`" for name in names))
            continue
        kind = option.get("type", "any")
        if kind == "object":
            kind = "object of scalars"
        if "$ref" in option:  # the one object the tools define: an input image
            kind = "input image (`path`, `data` or `uri`; `role`, `name`)"
        if kind == "array" and "$ref" in option.get("items", {}):
            kind = "list of input images"
        if "maxItems" in option:
            option = {**option, "maxLength": option["maxItems"]}
        bounds = [
            f"{word} {option[key]}"
            for key, word in (
                ("minimum", "≥"),
                ("exclusiveMinimum", ">"),
                ("maximum", "≤"),
                ("exclusiveMaximum", "<"),
                ("maxLength", "at most"),
            )
            if key in option
        ]
        parts.append(f"{kind} ({', '.join(bounds)})" if bounds else kind)
    return " or ".join(parts)


def mcp_tools() -> str:
    """Each tool of imagen mcp as a model sees it, with the built-in defaults' schema."""
    import anyio

    from imagen.config import parse_config
    from imagen.yamlfile import Located
    from imagen_mcp.server import build_server
    from imagen_mcp.settings import McpSettings

    config = parse_config(Located({}), environ={"HOME": "/home/you"})
    server = build_server(config, McpSettings(), queue="postgresql:///imagen")
    parts = []
    for tool in anyio.run(server.list_tools):
        schema = tool.input_schema
        required = set(schema.get("required", []))
        rows = [
            f"| `{name}` | {_schema_type(spec)} | {'yes' if name in required else ''} | "
            f"{spec.get('description', '')} |"
            for name, spec in schema.get("properties", {}).items()
        ]
        table_text = (
            "| argument | type | required | meaning |\n|---|---|---|---|\n" + "\n".join(rows) + "\n"
            if rows
            else "No arguments.\n"
        )
        hints = tool.annotations
        kind = "reads only" if hints and hints.read_only_hint else "acts"
        parts.append(f"### `{tool.name}` ({kind})\n\n{tool.description}\n\n{table_text}")
    return "\n".join(parts)


def config_keys() -> str:
    """Every top-level key, and every key of each section but ``serve:`` (docs/serve.md)."""
    from imagen.config import OWN_KEYS
    from imagen.sections import declared_sections

    declared = declared_sections()
    rows = [f"| `{key}` | imagen-core | {doc} |" for key, doc in OWN_KEYS.items()]
    rows += [f"| `{s.name}` | {dist} | {s.doc} |" for s, dist in declared]
    parts = [
        "### Top level\n\n| key | declared by | meaning |\n|---|---|---|\n" + "\n".join(rows) + "\n"
    ]
    for section, distribution in declared:
        if section.name == "serve":
            continue
        heading = f"{section.name}.NAME:" if section.named else f"{section.name}:"
        origin = "" if distribution == "imagen-core" else f" ({distribution})"
        parts.append(f"### `{heading}`{origin}\n\n{table(dict(section.keys))}")
    return "\n".join(parts)


# -- the API reference for adapter authors ---------------------------------------------------

API_OBJECTS = (
    "imagen.Backend",
    "imagen.BackendConfig",
    "imagen.Request",
    "imagen.Result",
    "imagen.GeneratedImage",
    "imagen.inputs.InputImage",
    "imagen.inputs.InputSupport",
    "imagen.Context",
    "imagen.Progress",
    "imagen.run_blocking",
    "imagen.retry.call_with_retry",
    "imagen.retry.read_policy",
    "imagen.retry.is_transient_status",
    "imagen.retry.retry_after",
    "imagen.errors",
    "imagen.testing.Traffic",
    "imagen.testing.checks_inputs.InputChecks",
)
"""What an adapter's author touches, in the order the reference shows it."""

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|exc):`~?([^`]+)`")


def _role(match: re.Match[str]) -> str:
    name = match.group(1)
    short = name.rsplit(".", 1)[-1] if match.group(0).count("~") else name
    return f"`{short}()`" if match.group(0).startswith((":meth", ":func")) else f"`{short}`"


def _markdown(doc: str) -> str:
    """A docstring as Markdown: roles and literals as code, fields as a list, blocks fenced."""
    out: list[str] = []
    block: list[str] | None = None
    for line in [*doc.splitlines(), ""]:
        if block is not None:
            if not line.strip() or line.startswith("    "):
                block.append(line[4:])
                continue
            text_block = "\n".join(block).strip("\n")
            out += ["```", text_block, "```", ""]
            block = None
        text = _ROLE.sub(_role, line).replace("``", "`")
        field = re.match(r"^:(param|raises|cvar|return)\s*([^:]*):\s*(.*)$", text)
        if field:
            kind, name, rest = field.groups()
            label = {"param": f"`{name}`", "cvar": f"`{name}` (class attribute)"}.get(kind)
            label = label or (f"raises `{name}`" if kind == "raises" else "returns")
            text = f"- {label}: {rest}"
        elif line.startswith("    ") and out and out[-1].startswith("- "):
            out[-1] += " " + text.strip()
            continue
        if text.endswith("::"):
            out += [text[:-1], ""]
            block = []
            continue
        out.append(text)
    return "\n".join(line.rstrip() for line in out).strip()


def _signature(obj: Any, name: str) -> str:
    """``name(a: int, b: str = 'x') -> T``, with the annotations as the source spells them."""
    import inspect

    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return name

    def spell(annotation: Any) -> str:
        return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)

    params, star = [], False
    for param in signature.parameters.values():
        if param.name in ("self", "cls"):
            continue
        if param.kind is param.KEYWORD_ONLY and not star:
            params.append("*")
            star = True
        prefix = {param.VAR_POSITIONAL: "*", param.VAR_KEYWORD: "**"}.get(param.kind, "")
        star = star or prefix == "*"
        text = prefix + param.name
        if param.annotation is not param.empty:
            text += f": {spell(param.annotation)}"
        if param.default is not param.empty:
            default = "..." if repr(param.default) == "<factory>" else repr(param.default)
            text += f" = {default}"
        params.append(text)
    result = ""
    if signature.return_annotation is not signature.empty and not inspect.isclass(obj):
        result = f" -> {spell(signature.return_annotation)}"
    return f"{name}({', '.join(params)}){result}"


def _members(cls: type) -> list[tuple[str, Any]]:
    """The public methods and properties ``cls`` itself defines or documents."""
    found = []
    for name, value in vars(cls).items():
        if name.startswith("_") or name in ("reproducible",):
            continue
        if isinstance(value, property | staticmethod | classmethod) or callable(value):
            found.append((name, value))
    return found


def _object(path: str) -> str:
    import importlib
    import inspect

    module_name, _, name = path.rpartition(".")
    if path == "imagen.errors":
        from imagen import errors

        parts = [f"### The errors (`imagen.errors`)\n\n{_markdown(inspect.getdoc(errors) or '')}"]
        tree = re.findall(r"\b(\w*(?:Error|Cancelled|Exceeded))\s", inspect.getdoc(errors) or "")
        assert sorted(tree) == sorted(errors.__all__), "the tree in imagen/errors.py is stale"
        for error in tree:
            cls = getattr(errors, error)
            base = cls.__mro__[1].__name__
            doc = _markdown(inspect.getdoc(cls) or "")
            sig = _signature(cls, error) if "__init__" in vars(cls) else error
            parts.append(f"#### `{sig}`\n\nA `{base}`, exit code {cls.exit_code}. {doc}")
        return "\n\n".join(parts)
    obj = getattr(importlib.import_module(module_name), name)
    kind = "class " if inspect.isclass(obj) else ""
    parts = [f"### `{kind}{_signature(obj, path)}`\n\n{_markdown(inspect.getdoc(obj) or '')}"]
    if inspect.isclass(obj):
        for member, value in _members(obj):
            target = value.fget if isinstance(value, property) else value
            target = getattr(target, "__func__", target)
            doc = inspect.getdoc(target)
            if not doc:
                continue
            if isinstance(value, property):
                heading = f"`{name}.{member}` (property)"
            else:
                heading = f"`{name}.{_signature(target, member)}`"
            parts.append(f"#### {heading}\n\n{_markdown(doc)}")
    return "\n\n".join(parts)


def api_reference() -> str:
    """Every class and function an adapter touches, from their docstrings."""
    return "\n\n".join(_object(path) for path in API_OBJECTS) + "\n"


def metadata_keys() -> str:
    """The backend metadata keys imagen reads, and where each goes."""
    from imagen.metadata.record import METADATA_KEYS

    rows = "\n".join(
        f"| `{key}` | {spec.meaning} | {f'`{spec.a1111}`' if spec.a1111 else '—'} | "
        f"{spec.used_by or '—'} |"
        for key, spec in METADATA_KEYS.items()
    )
    return "| key | what the backend puts there | A1111 `parameters` name | also read by |\n" + (
        f"|---|---|---|---|\n{rows}\n"
    )


SECTIONS: dict[str, tuple[str, Callable[[], str]]] = {
    "cli-reference": ("cli.md", cli_reference),
    "exit-codes": ("cli.md", exit_codes),
    "config-keys": ("config.md", config_keys),
    "mock-keys": ("config.md", mock_keys),
    "comfyui-keys": ("backends/comfyui.md", comfyui_keys),
    "replicate-keys": ("backends/replicate.md", replicate_keys),
    "openai-keys": ("backends/openai.md", openai_keys),
    "serve-keys": ("serve.md", serve_keys),
    "job-endings": ("worker.md", job_endings),
    "mcp-tools": ("mcp.md", mcp_tools),
    "mcp-keys": ("mcp.md", mcp_keys),
    "api-reference": ("plugins/api.md", api_reference),
    "metadata-keys": ("metadata.md", metadata_keys),
}


def render(text: str) -> str:
    """``text`` with every generated section brought up to date."""
    for name, (_, make) in SECTIONS.items():
        pattern = re.compile(
            rf"(<!-- generated: {name} -->\n).*?(<!-- end generated -->)", re.DOTALL
        )
        if pattern.search(text):
            text = pattern.sub(
                lambda m, make=make: m.group(1) + "\n" + make() + "\n" + m.group(2), text
            )
    return text


def main(check: bool) -> int:
    stale = []
    for file in sorted({file for file, _ in SECTIONS.values()}):
        path = DOCS / file
        current = path.read_text(encoding="utf-8")
        fresh = render(current)
        if fresh != current:
            stale.append(file)
            if not check:
                path.write_text(fresh, encoding="utf-8")
    if check and stale:
        print(f"out of date: {', '.join(stale)} (run: hatch run python docs/generate.py)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main("--check" in sys.argv))
