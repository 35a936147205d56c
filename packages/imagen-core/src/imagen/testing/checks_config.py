"""Checks of construction: the slice is validated, and building a backend is cheap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from imagen.backend import Backend, BackendFactory
from imagen.errors import ConfigError
from imagen.testing import probe
from imagen.testing.base import ConformanceBase, InvalidSlice
from imagen.testing.leaks import SecretProbe

__all__ = ["ConfigChecks"]

UNKNOWN_KEY = "imagen_conformance_unknown_key"


def _wrong_type(value: Any) -> Any:
    """A value of another type than ``value``: a mapping, or a list for a mapping."""
    return ["imagen", "conformance"] if isinstance(value, Mapping) else {"imagen": "conformance"}


def _names(error: ConfigError, key: str) -> bool:
    path = error.key or ""
    return path == key or path.endswith("." + key) or key in error.message


class ConfigChecks(ConformanceBase):
    """The slice: valid ones build, invalid ones are a ConfigError naming the key."""

    def _build(
        self, factory: BackendFactory, settings: Mapping[str, Any], environ: Mapping[str, str]
    ) -> Backend | BaseException:
        try:
            backend = factory(self._config(settings, environ))
        except Exception as exc:  # noqa: BLE001 (what was raised is what is checked)
            return exc
        backend.close()
        return backend

    def test_constructs_from_a_valid_slice(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert backend.name == "conformance"

    def test_invalid_slice_is_a_config_error_naming_the_key(
        self,
        backend_factory: BackendFactory,
        invalid_slice: InvalidSlice,
        environ: Mapping[str, str],
        secret_probe: SecretProbe,
    ) -> None:
        env = invalid_slice.environ if invalid_slice.environ is not None else environ
        with pytest.raises(ConfigError) as raised:
            backend_factory(self._config(invalid_slice.settings, env)).close()
        error = raised.value
        assert _names(error, invalid_slice.key), (
            f"the error does not name {invalid_slice.key!r}: {error}"
        )
        self._no_leak(secret_probe, {"the ConfigError": self._error_texts(error)})

    def test_an_unknown_key_is_refused(
        self,
        backend_factory: BackendFactory,
        valid_slice: Mapping[str, Any],
        environ: Mapping[str, str],
    ) -> None:
        built = self._build(backend_factory, {**valid_slice, UNKNOWN_KEY: True}, environ)
        if isinstance(built, Backend):
            pytest.fail(
                f"a slice with the unknown key {UNKNOWN_KEY!r} was accepted, so a misspelt key "
                "in imagen.yaml would be silently ignored: call config.check_keys(KNOWN_KEYS) "
                "in the constructor"
            )
        if not isinstance(built, ConfigError) or not _names(built, UNKNOWN_KEY):
            pytest.fail(
                f"an unknown key must be a ConfigError naming it, not {type(built).__name__}: "
                f"{built}"
            )

    def test_each_key_is_type_checked(
        self,
        backend_factory: BackendFactory,
        valid_slice: Mapping[str, Any],
        environ: Mapping[str, str],
    ) -> None:
        problems = []
        for key, value in valid_slice.items():
            wrong = _wrong_type(value)
            built = self._build(backend_factory, {**valid_slice, key: wrong}, environ)
            kind = "a list" if isinstance(wrong, list) else "a mapping"
            if isinstance(built, Backend):
                problems.append(
                    f"{key!r} set to {kind} was accepted: read it with config.get(key, TYPE) "
                    "(or require/choice/path), which refuses a value of the wrong type"
                )
            elif not isinstance(built, ConfigError):
                problems.append(
                    f"{key!r} set to {kind} raised {type(built).__name__} ({built}), not a "
                    "ConfigError: read it with config.get(key, TYPE)"
                )
            elif not _names(built, key):
                problems.append(f"{key!r} set to {kind}: the ConfigError does not name it")
        if problems:
            pytest.fail("; ".join(problems))

    def test_a_missing_key_or_credential_is_a_config_error(
        self,
        backend_factory: BackendFactory,
        valid_slice: Mapping[str, Any],
        environ: Mapping[str, str],
    ) -> None:
        problems = []
        for key in valid_slice:
            rest = {k: v for k, v in valid_slice.items() if k != key}
            built = self._build(backend_factory, rest, environ)
            if isinstance(built, BaseException) and not isinstance(built, ConfigError):
                problems.append(
                    f"without {key!r} construction raised {type(built).__name__} ({built}), "
                    "not a ConfigError: config.require() names the key"
                )
            elif isinstance(built, ConfigError) and not _names(built, key):
                problems.append(f"without {key!r}: the ConfigError does not name it ({built})")
        for var in environ:
            rest_env = {k: v for k, v in environ.items() if k != var}
            built = self._build(backend_factory, valid_slice, rest_env)
            if isinstance(built, BaseException) and not isinstance(built, ConfigError):
                problems.append(
                    f"with ${var} unset construction raised {type(built).__name__}, not a "
                    "ConfigError: read credentials with config.credential()"
                )
            elif isinstance(built, ConfigError) and var not in built.message:
                problems.append(
                    f"with ${var} unset the ConfigError does not name the variable to set"
                )
        if problems:
            pytest.fail("; ".join(problems))

    def test_constructor_makes_no_network_call(
        self,
        backend_factory: BackendFactory,
        valid_slice: Mapping[str, Any],
        environ: Mapping[str, str],
    ) -> None:
        module = getattr(backend_factory, "__module__", None)
        qualname = getattr(backend_factory, "__qualname__", "")
        if not module or "<locals>" in qualname:
            pytest.fail(
                f"the factory {backend_factory!r} must be importable (module:name) to be "
                "built in a fresh process: define it at module level"
            )
        answer = probe.construct(
            f"{module}:{qualname}", "conformance", self.backend_type, valid_slice, environ
        )
        if answer["network"]:
            pytest.fail(
                f"the constructor tried the network ({answer['network'][0]}): `imagen config "
                "check` and every start build backends, so a constructor only validates its "
                "slice; reach the upstream in generate()"
            )
        if answer["error"]:
            pytest.fail(f"the valid slice does not build in a fresh process: {answer['error']}")

    def test_plugin_import_is_light(self) -> None:
        module = self.plugin_module
        if module is None:
            from imagen.registry import backend_types

            kind = backend_types().get(self.backend_type)
            if kind is None:
                pytest.fail(f"backend type {self.backend_type!r} is not registered")
            module = kind.factory.__module__
        answer = probe.import_plugin(module)
        if answer.get("error"):
            pytest.fail(f"importing the plugin module {module} failed: {answer['error']}")
        if answer["modules"]:
            pytest.fail(
                f"importing the plugin module {module} (and calling its imagen_backend hook) "
                f"loads {', '.join(answer['modules'])} ({answer['seconds'] * 1000:.0f} ms): "
                "imagen imports every plugin at each start, even for --help; import SDKs, "
                "HTTP clients and PIL inside the backend factory"
            )
