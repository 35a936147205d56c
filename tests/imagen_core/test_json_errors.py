"""With ``--json``, a failure is one JSON object on stdout (and the usual line on stderr)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def _error(proc) -> dict:
    body = json.loads(proc.stdout)
    assert list(body) == ["error"]
    return body["error"]


def test_a_request_error_is_an_object(home):
    proc = home.run("generate", "a fox", "--json", "--style", "nope")
    assert proc.returncode == 2
    assert _error(proc) == {
        "type": "RequestError",
        "exit_code": 2,
        "message": 'unknown style "nope" (known: none are configured)',
    }
    assert proc.stderr == 'imagen: unknown style "nope" (known: none are configured)\n'


def test_a_config_error_carries_file_line_and_key(home):
    path = home.write_config("output:\n  directory: out\n  namig: x\n")
    proc = home.run("generate", "a fox", "--json")
    assert proc.returncode == 3
    error = _error(proc)
    assert error["type"] == "ConfigError"
    assert (error["file"], error["line"], error["key"]) == (str(path), 3, "output.namig")
    assert error["message"].startswith(f"{path}:3: output.namig: unknown key")
    assert proc.stderr.startswith(f"imagen: {path}:3: output.namig: unknown key")


def test_a_failed_generation_names_its_backend(home):
    proc = home.run("generate", "a fox", "--json", "--opt", "fail=permanent", "--size", "32x32")
    assert proc.returncode == 4
    error = _error(proc)
    assert error["type"] == "PermanentBackendError"
    assert error["backend"] == "mock"
    assert "simulated permanent failure" in error["message"]


def test_usage_errors_are_objects_too_even_before_json_is_parsed(home):
    for args in (
        ("generate", "a fox", "--json", "--sed", "3"),  # an unknown flag: found while parsing
        ("generate", "a fox", "--seed", "abc", "--json"),  # a value that does not convert
        ("generate", "--json"),  # no prompt
        ("backends", "--json", "extra"),
    ):
        proc = home.run(*args)
        assert proc.returncode == 2, args
        error = _error(proc)
        assert (error["type"], error["exit_code"]) == ("UsageError", 2)
        assert proc.stderr == f"imagen: {error['message']}\n"


def test_without_json_stdout_stays_empty(home):
    proc = home.run("generate", "a fox", "--style", "nope")
    assert (proc.returncode, proc.stdout) == (2, "")
    proc = home.run("generate", "--", "--json")  # a prompt, not the flag
    assert proc.returncode == 0
    assert proc.stdout.strip().endswith(".png")


def test_other_commands_with_json(home):
    home.write_config("backends:\n  x:\n    type: nosuch\n")
    proc = home.run("backends", "--json")
    assert proc.returncode == 0  # lists the uninstalled type: not an error
    proc = home.run("info", "missing.png", "--json")
    assert proc.returncode == 2
    assert _error(proc)["message"].endswith("missing.png: no such file")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(min_size=1, max_size=40).filter(lambda t: t not in ("png", "jpeg", "webp")))
def test_any_bad_value_still_gives_valid_json(cli, value):
    result = cli("generate", "a fox", "--json", "--opt", f"format={value}")
    assert result.exit_code == 2
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "RequestError"
    assert "option format must be one of png, jpeg, webp" in error["message"]
