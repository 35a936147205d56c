"""The Backend contract's types: Request, Result, Context, BackendConfig, errors."""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path

import pytest

from imagen import (
    Backend,
    BackendConfig,
    Cancelled,
    ConfigError,
    Context,
    DeadlineExceeded,
    GeneratedImage,
    Progress,
    Request,
    RequestError,
    Result,
    TransientBackendError,
    secrets,
)


def test_request_validates_its_fields():
    assert Request("cat", width=64, count=2).count == 2
    with pytest.raises(RequestError, match="prompt is empty"):
        Request("   ")
    with pytest.raises(RequestError, match="width must be a positive"):
        Request("cat", width=0)
    with pytest.raises(RequestError, match="count must be 1 or more"):
        Request("cat", count=0)
    with pytest.raises(RequestError, match="seed must be"):
        Request("cat", seed=-1)


def test_request_options_are_read_only_and_replace_revalidates():
    request = Request("cat", options={"a": 1})
    with pytest.raises(TypeError):
        request.options["a"] = 2  # type: ignore[index]
    assert request.replace(seed=5).seed == 5
    with pytest.raises(RequestError):
        request.replace(steps=-3)
    assert request.to_dict()["options"] == {"a": 1}


def test_generated_image_from_chunks_streams_in_order():
    chunks = [b"ab", b"", b"cdef", b"g"]
    image = GeneratedImage.from_chunks(iter(chunks), "image/png")
    assert image.stream.read(3) == b"abc"
    assert image.stream.read() == b"defg"


def test_result_closes_streams():
    stream = io.BytesIO(b"x")
    with Result([GeneratedImage(stream, "image/png")]) as result:
        assert len(result.images) == 1
    assert stream.closed


def test_context_cancel_from_another_thread_wakes_wait():
    context = Context()
    threading.Timer(0.05, context.cancel).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        context.wait(3600)
    assert time.monotonic() - started < 60  # woke on the flag, not after the hour
    assert context.cancelled


def test_context_deadline():
    context = Context(deadline_s=0.01)
    with pytest.raises(DeadlineExceeded):
        context.wait(5)
    with pytest.raises(DeadlineExceeded):
        context.check()
    assert context.time_left() == 0.0
    assert Context().time_left() is None


def test_context_reports_progress_and_run_id():
    seen: list[object] = []
    context = Context(on_progress=seen.append, on_run_id=seen.append)
    context.progress(Progress("step", 1, 4))
    context.report_run_id("run-1")
    assert seen == [Progress("step", 1, 4), "run-1"]
    assert context.run_id == "run-1"


def test_progress_rejects_malformed_reports():
    with pytest.raises(ValueError, match="unknown progress kind"):
        Progress("bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="past its total"):
        Progress("step", 5, 4)


def _config(**settings) -> BackendConfig:
    return BackendConfig(
        "gpu",
        "demo",
        settings,
        file=Path("/etc/imagen.yaml"),
        lines={"": 3, "base_url": 5, "token_env": 6},
        environ={"DEMO_TOKEN": "s3cr3t-value-123"},
    )


def test_backend_config_accessors_name_key_file_and_line():
    config = _config(base_url=5, steps=3, ratio=2)
    with pytest.raises(ConfigError) as info:
        config.require("base_url", str)
    assert str(info.value) == (
        'backend "gpu": must be a string, not a whole number (5) '
        "(/etc/imagen.yaml:5, backends.gpu.base_url)"
    )
    assert config.get("steps", int) == 3
    assert config.get("ratio", float) == 2.0
    assert config.get("missing", int, 7) == 7
    with pytest.raises(ConfigError, match='"model" is required'):
        config.require("model", str)
    with pytest.raises(ConfigError, match='unknown key "steps"'):
        config.check_keys(["base_url", "ratio"])


def test_backend_config_rejects_booleans_for_numbers():
    with pytest.raises(ConfigError, match="not a boolean"):
        _config(steps=True).get("steps", int)


def test_secret_from_env_is_registered_and_unset_variable_is_named():
    config = _config(token_env="DEMO_TOKEN")
    assert config.secret("token_env") == "s3cr3t-value-123"
    assert secrets.redact("echo s3cr3t-value-123!") == "echo ***!"
    with pytest.raises(ConfigError) as info:
        _config(token_env="NOPE_TOKEN").secret("token_env")
    assert "environment variable NOPE_TOKEN is not set" in str(info.value)
    assert _config().secret("token_env", "UNSET_DEFAULT", required=False) is None


def test_credential_reads_the_named_variable_or_the_default_one():
    assert _config(token_env="DEMO_TOKEN").credential("token_env") == "s3cr3t-value-123"
    assert _config().credential("token_env", "DEMO_TOKEN") == "s3cr3t-value-123"
    with pytest.raises(ConfigError, match="environment variable UNSET_DEFAULT is not set"):
        _config().credential("token_env", "UNSET_DEFAULT")
    with pytest.raises(ConfigError, match='"token_env" must name the environment variable'):
        _config().credential("token_env")
    with pytest.raises(ConfigError, match="must be the name of an environment variable"):
        _config(token_env=["DEMO_TOKEN"]).credential("token_env")


def test_optional_credential_is_none_only_when_nobody_asked_for_one():
    assert _config().optional_credential("token_env") is None
    assert _config().optional_credential("token_env", "UNSET_DEFAULT") is None
    assert _config().optional_credential("token_env", "DEMO_TOKEN") == "s3cr3t-value-123"
    # A variable the user named must be set: a typo is not "no credential".
    with pytest.raises(ConfigError, match="environment variable DEMO_TOKNE is not set"):
        _config(token_env="DEMO_TOKNE").optional_credential("token_env")


def test_has_credential_asks_without_reading_or_raising():
    assert _config(token_env="DEMO_TOKEN").has_credential("token_env")
    assert _config().has_credential("token_env", "DEMO_TOKEN")
    assert not _config(token_env="NOPE").has_credential("token_env")
    assert not _config().has_credential("token_env")
    assert not _config(token_env=3).has_credential("token_env")


def test_a_registered_credential_is_scrubbed_in_its_base64_forms_too():
    config = BackendConfig(
        "a1111", "demo", {"auth_env": "AUTH"}, environ={"AUTH": "alice:wonder-land"}
    )
    config.credential("auth_env")
    header = "Authorization: Basic " + base64.b64encode(b"alice:wonder-land").decode()
    assert secrets.redact(header) == "Authorization: Basic ***"


def test_backend_resume_is_optional():
    class Plain(Backend):
        def generate(self, request, context):
            return Result([])

    class Resumable(Plain):
        def resume(self, run_id, request, context):
            return Result([])

    plain = Plain(_config())
    assert not plain.supports_resume
    assert Resumable(_config()).supports_resume
    with pytest.raises(NotImplementedError):
        plain.resume("x", Request("cat"), Context())
    assert plain.name == "gpu"


def test_error_tree_and_exit_codes():
    error = TransientBackendError("upstream 503", backend="gpu", retry_after=2.5)
    assert str(error) == 'backend "gpu": upstream 503'
    assert error.retry_after == 2.5
    assert error.exit_code == 5
    assert ConfigError("bad", key="output.naming", file="/x.yaml", line=4).exit_code == 3
    assert str(ConfigError("bad", key="output.naming", file="/x.yaml", line=4)) == (
        "/x.yaml:4: output.naming: bad"
    )
    assert Cancelled().exit_code == 130
