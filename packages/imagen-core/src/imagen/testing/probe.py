"""Checks that need a fresh interpreter: plugin import cost, constructor network calls.

Each runs ``_probe_child.py`` (by its path, so that importing ``imagen.testing`` and pytest
does not pollute what is measured) with a JSON request on standard input, and reads a JSON
answer from standard output. A fresh process is the only honest way to
see what an import costs (the test process imported everything long ago), and the only
safe place for an audit hook that refuses network connections (it can't be removed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["ProbeError", "construct", "import_plugin"]

_CHILD = Path(__file__).with_name("_probe_child.py")
_GUARD_S = 300.0  # only so a wedged child can't hang the test run; never a speed limit


class ProbeError(Exception):
    """The probe process itself failed (not the backend under test)."""


def _run(mode: str, request: Mapping[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.pop("PYTHONSTARTUP", None)
    proc = subprocess.run(
        [sys.executable, str(_CHILD), mode],
        input=json.dumps(request, default=str),
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=_GUARD_S,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ProbeError(f"the {mode} probe failed (exit {proc.returncode}): {tail}")
    return json.loads(lines[-1])


def import_plugin(module: str) -> dict[str, Any]:
    """Import plugin ``module`` after imagen, and call its ``imagen_backend`` hook.

    :return: ``modules``: the third-party top-level packages that this loaded beyond what
        ``import imagen`` loads (the plugin's own package excepted); ``seconds``: how long
        it took; ``error``: why the import failed, if it did.
    """
    return _run("import", {"module": module})


def construct(
    factory: str, name: str, type_: str, settings: Mapping[str, Any], environ: Mapping[str, str]
) -> dict[str, Any]:
    """Build a backend with ``factory`` (``module:qualname``), refusing every connection.

    :return: ``network``: the connections the constructor tried (host and port), each
        refused; ``error``: what construction raised, if anything.
    """
    request = {
        "factory": factory,
        "name": name,
        "type": type_,
        "settings": dict(settings),
        "environ": dict(environ),
    }
    return _run("construct", request)
