"""The child side of :mod:`imagen.testing.probe`: run by path, in a fresh interpreter.

It imports nothing but the standard library and imagen before it measures.
"""

import sys

del sys.path[0]  # this directory: its modules must not shadow anything the plugin imports

import contextlib
import importlib
import json
import time
from collections.abc import Callable
from typing import Any

_NETWORK_EVENTS = {
    "socket.connect",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.sendto",
    "socket.sendmsg",
}


def _third_party(names: set[str], own: str) -> list[str]:
    tops = {name.partition(".")[0] for name in names}
    return sorted(
        top
        for top in tops
        if top not in sys.stdlib_module_names and top not in ("imagen", own) and top[0] != "_"
    )


def _child_import(request: dict[str, Any]) -> dict[str, Any]:
    import imagen
    import imagen.plugins  # what every imagen start loads anyway

    del imagen
    module_name = request["module"]
    before = set(sys.modules)
    started = time.perf_counter()
    try:
        module = importlib.import_module(module_name)
        hook = getattr(module, "imagen_backend", None)
        if callable(hook):
            hook()
    except Exception as exc:  # noqa: BLE001 (reported to the parent)
        return {"error": f"{type(exc).__name__}: {exc}", "modules": [], "seconds": 0.0}
    seconds = time.perf_counter() - started
    added = set(sys.modules) - before
    return {"modules": _third_party(added, module_name.partition(".")[0]), "seconds": seconds}


def _resolve(path: str) -> Callable[..., Any]:
    module_name, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _child_construct(request: dict[str, Any]) -> dict[str, Any]:
    from imagen.backend import BackendConfig

    factory = _resolve(request["factory"])
    config = BackendConfig(
        request["name"], request["type"], request["settings"], environ=request["environ"]
    )
    attempts: list[str] = []

    def refuse(event: str, args: tuple[Any, ...]) -> None:
        if event not in _NETWORK_EVENTS:
            return
        if event == "socket.connect":
            target = args[1]
        elif event in ("socket.sendto", "socket.sendmsg"):
            target = args[-1]
        else:
            target = args[:2] if event == "socket.getaddrinfo" else args[0]
        attempts.append(f"{event} {target!r}")
        raise ConnectionRefusedError("imagen conformance: no network in a backend's constructor")

    sys.addaudithook(refuse)
    error = None
    try:
        backend = factory(config)
    except BaseException as exc:  # noqa: BLE001 (reported to the parent)
        error = f"{type(exc).__name__}: {exc}"
    else:
        close = getattr(backend, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):  # closing is not what is checked
                close()
    return {"network": attempts, "error": error}


def main() -> None:
    mode = sys.argv[1]
    request = json.loads(sys.stdin.read())
    answer = _child_import(request) if mode == "import" else _child_construct(request)
    sys.stdout.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
