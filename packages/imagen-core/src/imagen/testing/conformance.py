"""The backend conformance suite: the Backend contract, as tests.

Subclass :class:`BackendConformance` in a test module (name the subclass ``Test...``) and
fill in what it asks for. Every ``test_*`` method below then runs against your backend.
"""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import pytest

from imagen.backend import Backend, BackendConfig, BackendFactory
from imagen.context import PROGRESS_KINDS, Progress
from imagen.errors import (
    Cancelled,
    ConfigError,
    PermanentBackendError,
    RunLostError,
    TransientBackendError,
)
from imagen.metadata import sniff
from imagen.request import IGNORED_KEY, REQUEST_FIELDS, Request, Result
from imagen.testing.recording import RecordingContext

__all__ = ["BackendConformance", "InvalidSlice", "StandIn"]

FailureKind = Literal["transient", "permanent"]
_OPTIONAL_FIELDS = ("negative_prompt", "steps", "seed", "width", "height")


@runtime_checkable
class StandIn(Protocol):
    """What the suite asks of an upstream stand-in by default.

    Implement these on your loopback server, or override
    :meth:`BackendConformance.make_slow` and :meth:`BackendConformance.make_failure`.
    """

    def fail_next(self, kind: FailureKind) -> None:
        """Make the next run fail the way the real upstream fails ``kind``-ly (a 503, a 422)."""

    def slow_next(self, seconds: float) -> None:
        """Make the next run take at least ``seconds`` upstream (queued or running)."""


@dataclass(frozen=True)
class InvalidSlice:
    """A config slice the backend must refuse, and the key its error must name.

    :param settings: the slice (without ``type``).
    :param key: the key of the slice the :class:`~imagen.ConfigError` must be about.
    :param environ: environment for this slice, when it differs from the valid one.
    """

    settings: Mapping[str, Any]
    key: str
    environ: Mapping[str, str] | None = None
    id: str = field(default="", compare=False)


def _check_images(result: Result, count: int) -> list[bytes]:
    """Read every image, check it is what it claims to be, and return the bytes."""
    from PIL import Image

    assert isinstance(result, Result), f"generate returned {type(result).__name__}, not a Result"
    assert len(result.images) == count, f"asked for {count} images, got {len(result.images)}"
    datas = []
    for number, image in enumerate(result.images, start=1):
        data = image.stream.read()
        image.close()
        actual = sniff(data[:16])
        assert actual == image.mime_type, (
            f"image {number} says {image.mime_type} but its bytes are {actual or 'no known image'}"
        )
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.load()  # the whole image decodes, not just its header
        datas.append(data)
    return datas


class BackendConformance:
    """Base class of a backend's conformance tests.

    Set :attr:`backend_type` and :attr:`invalid_slices`; override the ``upstream`` and
    ``valid_slice`` fixtures (and ``environ`` when your slice reads credentials). The
    defaults of :meth:`make_slow` and :meth:`make_failure` drive a :class:`StandIn`.
    """

    backend_type: ClassVar[str] = ""
    """The type name your plugin registers through the ``imagen_backend`` hook."""

    invalid_slices: ClassVar[Sequence[InvalidSlice]] = ()
    """Slices construction must refuse (at least one), each with the key to blame."""

    ignores: ClassVar[frozenset[str]] = frozenset()
    """Request fields this backend cannot honour (``negative_prompt``, ``seed``, ...): they
    must be listed under ``ignored`` exactly when a request sets them."""

    slow_run_s: ClassVar[float] = 60.0
    """How long a run made slow by :meth:`make_slow` lasts upstream."""

    cancel_within_s: ClassVar[float] = 10.0
    """How soon after cancellation ``generate`` must have raised ``Cancelled``."""

    # -- what the author provides ---------------------------------------------------------

    @pytest.fixture
    def upstream(self) -> Any:
        """The loopback stand-in of your upstream (None for a backend with no upstream)."""
        return None

    @pytest.fixture
    def valid_slice(self, upstream: Any) -> Mapping[str, Any]:
        """A slice that builds a working backend talking to ``upstream``."""
        raise NotImplementedError("override the valid_slice fixture")

    @pytest.fixture
    def environ(self) -> Mapping[str, str]:
        """The environment the slice reads credentials from; its values count as secrets."""
        return {}

    @pytest.fixture
    def base_request(self) -> Request:
        """The request most checks send; override for an upstream with fixed sizes."""
        return Request("a lighthouse at dusk, conformance check", width=64, height=64, seed=1234)

    def make_slow(self, upstream: Any, request: Request, seconds: float) -> Request:
        """Arrange for ``request`` to run for ``seconds`` upstream; return the request to send."""
        if not isinstance(upstream, StandIn):
            pytest.fail("give your stand-in slow_next(seconds), or override make_slow()")
        upstream.slow_next(seconds)
        return request

    def make_failure(self, upstream: Any, request: Request, kind: FailureKind) -> Request:
        """Arrange for ``request`` to fail ``kind``-ly upstream; return the request to send."""
        if not isinstance(upstream, StandIn):
            pytest.fail("give your stand-in fail_next(kind), or override make_failure()")
        upstream.fail_next(kind)
        return request

    def seen_seed(self, upstream: Any) -> int | None:
        """The seed the stand-in last received, for a backend whose pixels vary by run.

        Override it when your backend is not ``reproducible`` and honours seeds.
        """
        return None

    # -- built from the above ---------------------------------------------------------------

    @pytest.fixture
    def backend_factory(self) -> BackendFactory:
        """The factory of :attr:`backend_type`, as the ``imagen_backend`` hook offers it."""
        from imagen.registry import backend_types

        types = backend_types()
        if self.backend_type not in types:
            pytest.fail(
                f"backend type {self.backend_type!r} is not registered "
                f"(installed: {', '.join(sorted(types))}); is the package installed?"
            )
        return types[self.backend_type].factory

    def _config(
        self, settings: Mapping[str, Any], environ: Mapping[str, str], name: str = "conformance"
    ) -> BackendConfig:
        return BackendConfig(name, self.backend_type, dict(settings), environ=dict(environ))

    @pytest.fixture
    def backend(
        self,
        backend_factory: BackendFactory,
        valid_slice: Mapping[str, Any],
        environ: Mapping[str, str],
    ) -> Iterator[Backend]:
        """A backend built from the valid slice."""
        backend = backend_factory(self._config(valid_slice, environ))
        yield backend
        backend.close()

    def _secrets(self, environ: Mapping[str, str]) -> list[str]:
        return [value for value in environ.values() if len(value) >= 6]

    # -- the checks -------------------------------------------------------------------------

    def test_constructs_from_a_valid_slice(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert backend.name == "conformance"

    def test_invalid_slice_is_a_config_error_naming_the_key(
        self,
        backend_factory: BackendFactory,
        invalid_slice: InvalidSlice,
        environ: Mapping[str, str],
    ) -> None:
        env = invalid_slice.environ if invalid_slice.environ is not None else environ
        with pytest.raises(ConfigError) as raised:
            backend_factory(self._config(invalid_slice.settings, env)).close()
        error = raised.value
        key_path = error.key or ""
        named = (
            key_path == invalid_slice.key
            or key_path.endswith("." + invalid_slice.key)
            or invalid_slice.key in error.message
        )
        assert named, f"the error does not name {invalid_slice.key!r}: {error}"
        for secret in self._secrets(env):
            assert secret not in str(error), "the error shows a credential"

    def test_images_match_their_mime_type_and_decode(
        self, backend: Backend, base_request: Request
    ) -> None:
        _check_images(backend.generate(base_request, RecordingContext()), 1)

    def test_count_gives_that_many_images(self, backend: Backend, base_request: Request) -> None:
        datas = _check_images(
            backend.generate(base_request.replace(count=3), RecordingContext()), 3
        )
        assert len(datas) == 3

    def test_seed_is_honoured_or_listed_as_ignored(
        self, backend: Backend, base_request: Request, upstream: Any
    ) -> None:
        first = backend.generate(base_request, RecordingContext())
        ignored = first.metadata.get(IGNORED_KEY) or []
        pixels = _check_images(first, 1)
        if "seed" in ignored:
            return
        if backend.reproducible:
            again = _check_images(backend.generate(base_request, RecordingContext()), 1)
            assert again == pixels, "reproducible backend: the same seed gave different bytes"
            other = base_request.replace(seed=(base_request.seed or 0) + 1)
            assert _check_images(backend.generate(other, RecordingContext()), 1) != pixels, (
                "another seed gave the same image"
            )
            return
        seen = self.seen_seed(upstream)
        assert seen == base_request.seed, (
            f"the upstream received seed {seen!r}, not {base_request.seed}; honour it, list "
            "'seed' under 'ignored', or override seen_seed() to report what the stand-in got"
        )

    def test_ignored_fields_are_listed(self, backend: Backend, base_request: Request) -> None:
        request = base_request.replace(
            negative_prompt=base_request.negative_prompt or "blurry, low quality",
            steps=base_request.steps or 8,
            options={**base_request.options, "imagen_conformance_probe": 1},
        )
        result = backend.generate(request, RecordingContext())
        _check_images(result, 1)
        ignored = result.metadata.get(IGNORED_KEY, [])
        assert isinstance(ignored, list), "metadata['ignored'] must be a list of field names"
        allowed = set(REQUEST_FIELDS) | {f"options.{key}" for key in request.options}
        for name in ignored:
            assert name in allowed, f"{name!r} in 'ignored' is no field of the request"
        fields = {
            name for name in self.ignores if name in _OPTIONAL_FIELDS and getattr(request, name)
        }
        assert fields <= set(ignored), (
            f"these fields are ignored but not listed: {fields - set(ignored)}"
        )
        assert not set(ignored) & (set(_OPTIONAL_FIELDS) - self.ignores), (
            "the backend lists fields as ignored that the test class does not declare in `ignores`"
        )
        json.dumps(result.metadata, default=str)  # the metadata reaches a JSON sidecar

    def test_progress_is_well_formed_and_ordered(
        self, backend: Backend, base_request: Request
    ) -> None:
        context = RecordingContext()
        _check_images(backend.generate(base_request, context), 1)
        events = context.events
        assert events, "no progress reported: report at least 'started' and 'finished'"
        for event in events:
            assert isinstance(event, Progress), f"progress must be a Progress, not {event!r}"
            assert event.kind in PROGRESS_KINDS
        kinds = [event.kind for event in events]
        if "started" in kinds:
            assert "queued" not in kinds[kinds.index("started") :], "'queued' came after 'started'"
        if "finished" in kinds:
            assert kinds.index("finished") == len(kinds) - 1, "progress came after 'finished'"
        last: dict[tuple[int | None, str], int] = {}
        for event in events:
            if event.kind == "step" and event.current is not None:
                key = (event.total, event.message)
                assert event.current >= last.get(key, 0), f"steps went backwards: {event}"
                last[key] = event.current

    def test_cancellation_mid_run_raises_cancelled_promptly(
        self, backend: Backend, base_request: Request, upstream: Any
    ) -> None:
        request = self.make_slow(upstream, base_request, self.slow_run_s)
        context = RecordingContext()
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = backend.generate(request, context)
            except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        context.first_event.wait(min(5.0, self.slow_run_s / 4))  # let it get going upstream
        context.cancel()
        thread.join(self.cancel_within_s)
        assert not thread.is_alive(), f"still running {self.cancel_within_s} s after cancel()"
        assert "result" not in outcome, "generate returned images after it was cancelled"
        assert isinstance(outcome.get("error"), Cancelled), (
            f"expected Cancelled, got {outcome.get('error')!r}"
        )

    @pytest.mark.parametrize(
        ("kind", "error"),
        [("transient", TransientBackendError), ("permanent", PermanentBackendError)],
    )
    def test_upstream_errors_arrive_typed(
        self,
        backend: Backend,
        base_request: Request,
        upstream: Any,
        kind: FailureKind,
        error: type[Exception],
        environ: Mapping[str, str],
    ) -> None:
        request = self.make_failure(upstream, base_request, kind)
        raised: BaseException | None = None
        try:
            backend.generate(request, RecordingContext())
        except Exception as exc:  # noqa: BLE001 (an error of any type is what is checked)
            raised = exc
        if raised is None:
            pytest.fail(f"a {kind} upstream failure did not raise")
        if not isinstance(raised, error):
            pytest.fail(f"a {kind} upstream failure must raise {error.__name__}, not {raised!r}")
        text = f"{raised} {raised.args!r}"
        for secret in self._secrets(environ):
            assert secret not in text, "the error shows a credential"

    def test_resume_reattaches_to_a_run_it_started(
        self,
        backend: Backend,
        backend_factory: BackendFactory,
        valid_slice: Mapping[str, Any],
        environ: Mapping[str, str],
        base_request: Request,
        upstream: Any,
    ) -> None:
        if not backend.supports_resume:
            with pytest.raises(NotImplementedError):
                backend.resume("imagen-conformance-run", base_request, RecordingContext())
            return
        context = RecordingContext()
        _check_images(backend.generate(base_request, context), 1)
        assert context.run_ids, "a backend that offers resume must report the run id"
        other = backend_factory(self._config(valid_slice, environ, "conformance-2"))
        try:
            # A finished run: a new process (another instance) collects its images.
            _check_images(other.resume(context.run_ids[-1], base_request, RecordingContext()), 1)
            # A run still going: re-attach while the first caller is still waiting on it.
            slow = self.make_slow(upstream, base_request, 2.0)
            first = RecordingContext()
            results: dict[str, Any] = {}
            thread = threading.Thread(
                target=lambda: results.update(first=backend.generate(slow, first)), daemon=True
            )
            thread.start()
            assert first.run_id_reported.wait(30), "no run id reported for the slow run"
            _check_images(other.resume(first.run_ids[-1], slow, RecordingContext()), 1)
            thread.join(60)
            _check_images(results["first"], 1)
            with pytest.raises(RunLostError):
                other.resume(str(uuid.uuid4()), base_request, RecordingContext())
        finally:
            other.close()

    def test_no_secret_reaches_metadata_or_errors(
        self, backend: Backend, base_request: Request, environ: Mapping[str, str]
    ) -> None:
        context = RecordingContext()
        result = backend.generate(base_request, context)
        _check_images(result, 1)
        texts = [json.dumps(result.metadata, default=str), *(e.message for e in context.events)]
        texts += context.run_ids
        for secret in self._secrets(environ):
            for text in texts:
                assert secret not in text, "a credential from the environment reached the output"
