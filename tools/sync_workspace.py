"""Reinstall the workspace packages whose installed metadata no longer matches their pyproject.

Hatch installs every package under ``packages/`` editable when it creates the environment,
and afterwards only checks that each is still installed. The code is read from the working
tree, but the metadata is not: an entry point added since (a new built-in plugin, a console
script) or a new dependency stays invisible until the package is installed again. ``hatch run
test`` runs this first, so a long-lived environment tests what the working tree declares.

Usage: ``python tools/sync_workspace.py`` (prints one line per package it reinstalls).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _entry_points(project: dict) -> set[tuple[str, str, str]]:
    declared = dict(project.get("entry-points", {}))
    declared["console_scripts"] = project.get("scripts", {})
    return {
        (group, name, value) for group, table in declared.items() for name, value in table.items()
    }


def _requirements(texts: list[str]) -> set[str]:
    """The requirements that hold without extras, in one spelling."""
    parsed = (Requirement(text) for text in texts)
    return {str(req) for req in parsed if req.marker is None or "extra" not in str(req.marker)}


def why_stale(pyproject: Path) -> str | None:
    """Why the installed package of ``pyproject`` must be installed again, or None if it is current."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    try:
        installed = metadata.distribution(project["name"])
    except metadata.PackageNotFoundError:
        return "it is not installed"
    if {(ep.group, ep.name, ep.value) for ep in installed.entry_points} != _entry_points(project):
        return "its entry points changed"
    if _requirements(installed.requires or []) != _requirements(project.get("dependencies", [])):
        return "its dependencies changed"
    return None


def main() -> int:
    stale = []
    for pyproject in sorted(ROOT.glob("packages/*/pyproject.toml")):
        reason = why_stale(pyproject)
        if reason is not None:
            print(
                f"sync_workspace: reinstalling {pyproject.parent.name}: {reason}", file=sys.stderr
            )
            stale += ["--editable", str(pyproject.parent)]
    if not stale:
        return 0
    install = [sys.executable, "-m", "pip", "install", "--quiet"]
    return subprocess.run([*install, *stale], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
