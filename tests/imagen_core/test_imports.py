"""Start-up stays cheap: no SDK, no image library, no YAML parser for --help."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = [
    "PIL",
    "yaml",
    "httpx",
    "openai",
    "replicate",
    "supabase",
    "websocket",
    "psycopg",
    "mcp",
    "mcp_types",
    "pydantic",
    "starlette",
    "uvicorn",
    "imagen_mcp.server",
    "imagen.pipeline",
    "imagen.backends.mock",
    "imagen.config",
]

PROBE = """
import json, sys
from imagen.cli import main
sys.argv = ["imagen", *{args!r}]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(home, *args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=list(args))],
        env=home.env,
        cwd=home.cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(proc.stderr.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return [
        name for name in HEAVY if name in modules or any(m.startswith(name + ".") for m in modules)
    ]


def test_help_imports_nothing_heavy(home):
    del home.env["IMAGEN_LOAD_PLUGINS"]  # every installed adapter's plugin loads
    modules = _modules_after(home, "--help")
    assert "imagen.plugins" in modules  # plugins were loaded: their commands are in --help
    for plugin in (
        "imagen_comfyui.plugin",
        "imagen_replicate.plugin",
        "imagen_openai.plugin",
        "imagen_mcp.plugin",
    ):
        assert plugin in modules
    assert _heavy(modules) == []


def test_listing_plugins_and_backend_types_imports_nothing_heavy(home):
    del home.env["IMAGEN_LOAD_PLUGINS"]
    assert _heavy(_modules_after(home, "plugins")) == []


def test_importing_the_package_is_light():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, imagen; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "click" not in proc.stdout
    assert "'PIL'" not in proc.stdout
    assert "'yaml'" not in proc.stdout


def test_a_generation_without_cloud_imports_no_supabase(home):
    modules = _modules_after(home, "generate", "a cat", "--size", "32x32")
    assert "imagen.pipeline" in modules  # it did generate
    assert [m for m in modules if m.split(".")[0] in ("supabase", "storage3", "postgrest")] == []


def test_the_lazy_summaries_are_the_commands_own():
    """``imagen --help`` lists built-in commands without importing them: from lazy.BUILTIN."""
    import click

    from imagen.cli.lazy import BUILTIN, load_builtin, summary_of

    for name in BUILTIN:
        command = load_builtin(name)
        assert command.name == name
        for limit in (30, 45, 60, 80, 200):
            assert summary_of(name, limit) == command.get_short_help_str(limit), (name, limit)
    import imagen.cli

    imagen.cli._register_builtin_commands()
    own = {
        n
        for n, c in imagen.cli.cli.commands.items()
        if c.callback is None or c.callback.__module__.startswith("imagen.cli")
    }
    assert own == set(BUILTIN)  # every built-in command is in the table
    assert isinstance(imagen.cli.cli, click.Group)


def test_help_imports_no_command_module(tmp_path):
    import subprocess
    import sys

    probe = (
        "import sys; sys.argv = ['imagen', '--help']\n"
        "from imagen.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('imagen')), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"IMAGEN_LOAD_PLUGINS": "", "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    loaded = proc.stderr
    for module in ("imagen.cli.generate", "imagen.cli.history", "imagen.backend", "imagen.inputs"):
        assert f"'{module}'" not in loaded
    assert "generate" in proc.stdout
