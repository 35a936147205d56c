"""``imagen new-adapter``: write a ready-to-install adapter package from templates."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from imagen import __version__

__all__ = ["NAME_PATTERN", "write_adapter"]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")

# template → where it goes in the new package ({package} is the import package)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "src/{package}/__init__.py",
    "plugin.py.tmpl": "src/{package}/plugin.py",
    "backend.py.tmpl": "src/{package}/backend.py",
    "standin.py.tmpl": "tests/standin.py",
    "test_backend.py.tmpl": "tests/test_backend.py",
}


def names(name: str) -> dict[str, str]:
    """The names a package for backend type ``name`` uses."""
    ident = name.replace("-", "_")
    major, minor = (int(part) for part in __version__.split(".")[:2])
    return {
        "name": name,
        "dist": f"imagen-{name.replace('_', '-')}",
        "package": f"imagen_{ident}",
        "package_short": ident,
        "Class": "".join(part.capitalize() for part in ident.split("_")),
        "ENV": ident.upper(),
        "core_version": f"{major}.{minor}",
        "core_next": f"{major}.{minor + 1}" if major == 0 else f"{major + 1}",
    }


def write_adapter(name: str, parent: Path) -> Path:
    """Write the package for backend type ``name`` into ``parent``; return its directory.

    :raises ValueError: the name is not a valid type name, or the directory exists.
    """
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"{name!r} is not a valid backend type name: use lower-case letters, digits and "
            "single hyphens or underscores, starting with a letter (e.g. acme or stability-ai)"
        )
    values = names(name)
    root = parent / values["dist"]
    if root.exists():
        raise ValueError(f"{root} already exists")
    templates = resources.files("imagen.scaffold")
    for template, target in FILES.items():
        text = templates.joinpath(template).read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        path = root / target.format(package=values["package"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "src" / values["package"] / "py.typed").touch()
    return root
