"""What a conformance test class provides, and the helpers every check shares.

:class:`ConformanceBase` holds the author's side of :class:`~imagen.testing.BackendConformance`:
the class attributes and fixtures to fill in, and the methods that drive the stand-in
(override them for a stand-in that speaks another dialect). The checks live in
``checks_*.py`` beside it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from imagen.backend import Backend, BackendConfig, BackendFactory
from imagen.context import Context
from imagen.request import IGNORED_KEY, Request, Result
from imagen.testing.images import Decoded, ImageDefect, decode
from imagen.testing.leaks import SecretProbe
from imagen.testing.standin import FailureKind, Traffic

__all__ = ["SECRETS", "ConformanceBase", "InvalidSlice", "Outcome"]

SUITE_TEXTS = (
    "imagen_conformance_probe",
    "imagen_conformance_unknown_key",
    "imagen conformance check",
    "imagen-conformance-run",
)
"""Words the suite itself sends: a piece of a secret that is also one of them is no leak."""

SECRETS = pytest.StashKey[SecretProbe]()
"""Where each conformance test keeps its secrets, for the plugin to scrub its report."""


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


@dataclass
class Outcome:
    """How a ``generate`` run in a helper thread ended, if it did."""

    finished: bool
    result: Result | None = None
    error: BaseException | None = None
    seconds: float = 0.0


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.texts.append(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                self.texts.append(str(record.exc_info[1]))


class ConformanceBase:
    """The author's side of the suite: what to set, what to override, and shared helpers."""

    # -- class attributes -----------------------------------------------------------------

    backend_type: ClassVar[str] = ""
    """The type name your plugin registers through the ``imagen_backend`` hook."""

    invalid_slices: ClassVar[Sequence[InvalidSlice]] = ()
    """Slices construction must refuse (at least one), each with the key to blame. The suite
    also makes its own: an unknown key, each key with a value of the wrong type, each key
    and each credential left out."""

    ignores: ClassVar[frozenset[str]] = frozenset()
    """Request fields this backend cannot honour (``negative_prompt``, ``seed``, ...): they
    must be listed under ``ignored`` exactly when a request sets them."""

    passes_options_through: ClassVar[bool] = False
    """``--opt`` keys go to the upstream as they are (Replicate's model inputs), where an
    unknown one is the upstream's to refuse: the suite then checks that an unknown option
    reached the submission, instead of that it was listed as ignored."""

    has_upstream: ClassVar[bool] = True
    """False only for a backend that calls no service at all (the built-in ``mock``): the
    checks of upstream behaviour are then skipped, saying so."""

    stops_upstream: ClassVar[bool] = True
    """The upstream can be told to stop a run (a cancel call, an interrupt): the suite checks
    that cancelling reaches it. False when it has no way (OpenAI's Images API)."""

    timeout_key: ClassVar[str | None] = None
    """The slice key that bounds how long one upstream call may go unanswered, in seconds
    (``timeout_s``, ``http_timeout_s``). Required with an upstream: the suite sets it low and
    hangs the stand-in, to prove ``generate`` gives up."""

    plugin_module: ClassVar[str | None] = None
    """The module your ``imagen`` entry point names; found from :attr:`backend_type` when
    None. The suite imports it in a fresh interpreter to see what it pulls in."""

    slow_run_s: ClassVar[float] = 60.0
    """How long a run made slow by :meth:`make_slow` lasts upstream."""

    cancel_within_s: ClassVar[float] = 10.0
    """How soon after cancellation (or a deadline, or a timeout) ``generate`` must end."""

    hang_timeout_s: ClassVar[float] = 1.0
    """The value :attr:`timeout_key` gets for the hanging-upstream check, and the deadline of
    the deadline check."""

    # -- fixtures the author overrides ------------------------------------------------------

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

    @pytest.fixture
    def other_size_request(self, base_request: Request) -> Request:
        """A request of another, non-square size; by default 1.5 times as wide."""
        width = base_request.width or 64
        return base_request.replace(width=max(16, width * 3 // 2 // 16 * 16))

    # -- methods that drive the stand-in (override for another dialect) --------------------

    def make_slow(self, upstream: Any, request: Request, seconds: float) -> Request:
        """Arrange for ``request`` to run for ``seconds`` upstream; return the request to send."""
        self._control(upstream, "slow_next", "make_slow")(seconds)
        return request

    def make_failure(self, upstream: Any, request: Request, kind: FailureKind) -> Request:
        """Arrange for ``request`` to fail ``kind``-ly upstream; return the request to send."""
        self._control(upstream, "fail_next", "make_failure")(kind)
        return request

    def make_hang(self, upstream: Any, request: Request) -> Request:
        """Arrange for the upstream to receive ``request`` and never answer."""
        self._control(upstream, "hang_next", "make_hang")()
        return request

    def make_drop(self, upstream: Any, request: Request) -> Request:
        """Arrange for the connection to drop after ``request`` reached the upstream."""
        self._control(upstream, "drop_next", "make_drop")()
        return request

    def make_status(
        self, upstream: Any, request: Request, status: int, headers: Mapping[str, str]
    ) -> Request:
        """Arrange for the upstream to answer ``request``'s submission with ``status``."""
        self._control(upstream, "answer_next", "make_status")(status, None, headers)
        return request

    def traffic(self, upstream: Any) -> Traffic:
        """What reached the stand-in (its ``traffic``)."""
        traffic = getattr(upstream, "traffic", None)
        if not isinstance(traffic, Traffic):
            pytest.fail(
                "the suite counts what reaches the upstream: give your stand-in a `traffic` "
                "(imagen.testing.Traffic; a LoopbackServer has one) and record submissions and "
                "cancels in it, or override traffic()"
            )
        return traffic

    def seen_seed(self, upstream: Any) -> int | None:
        """The seed the stand-in last received, for a backend whose pixels vary by run.

        Override it when your backend is not ``reproducible`` and honours seeds.
        """
        return None

    def expected_size(self, request: Request) -> tuple[int, int] | None:
        """The size the images of ``request`` must have; None when the request sets none.

        Override it for an upstream that rounds sizes (to multiples of 64, to the nearest
        aspect ratio it knows) with the size it really makes.
        """
        if request.width is None or request.height is None:
            return None
        return request.width, request.height

    # -- built from the above -----------------------------------------------------------------

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

    @pytest.fixture
    def secret_probe(
        self, environ: Mapping[str, str], base_request: Request, valid_slice: Mapping[str, Any]
    ) -> SecretProbe:
        """Every form of every credential in ``environ``, to find in output."""
        public = [base_request.prompt, base_request.negative_prompt, json.dumps(valid_slice)]
        public += SUITE_TEXTS
        return SecretProbe(environ, public)

    @pytest.fixture(autouse=True)
    def _scrub_report(self, request: pytest.FixtureRequest, secret_probe: SecretProbe) -> None:
        # imagen's pytest plugin scrubs these from the test's report: a failing check (or an
        # error a backend raised) must not print a credential into a CI log.
        request.node.stash[SECRETS] = secret_probe

    def _config(
        self, settings: Mapping[str, Any], environ: Mapping[str, str], name: str = "conformance"
    ) -> BackendConfig:
        return BackendConfig(name, self.backend_type, dict(settings), environ=dict(environ))

    def _control(self, upstream: Any, name: str, override: str) -> Any:
        control = getattr(upstream, name, None)
        if not callable(control):
            base = (
                "LoopbackServer gives it; declare submission_routes"
                if name
                in (
                    "hang_next",
                    "drop_next",
                    "answer_next",
                )
                else "see imagen.testing.StandIn"
            )
            pytest.fail(f"give your stand-in {name}() ({base}), or override {override}()")
        return control

    def _need_upstream(self, upstream: Any) -> None:
        if not self.has_upstream:
            pytest.skip(f"{type(self).__name__}.has_upstream is False: no upstream to check")
        if upstream is None:
            pytest.fail(
                "this check needs your stand-in: override the upstream fixture (or set "
                "has_upstream = False for a backend that calls no service)"
            )

    # -- helpers for the checks -----------------------------------------------------------------

    def _images(self, result: Result, count: int) -> list[Decoded]:
        """Read and strictly decode every image of ``result``; fail saying what is wrong."""
        if not isinstance(result, Result):
            pytest.fail(f"generate returned {type(result).__name__}, not a Result")
        if len(result.images) != count:
            pytest.fail(f"asked for {count} images, got {len(result.images)}")
        decoded = []
        for number, image in enumerate(result.images, start=1):
            data = image.stream.read()
            image.close()
            try:
                decoded.append(decode(data, image.mime_type))
            except ImageDefect as exc:
                pytest.fail(f"image {number} of {count}: {exc}")
        return decoded

    def _in_thread(
        self, backend: Backend, request: Request, context: Context, wait_s: float
    ) -> Outcome:
        """Run ``generate`` in a helper thread; wait at most ``wait_s`` for it to end."""
        outcome = Outcome(finished=False)
        started = time.monotonic()

        def run() -> None:
            try:
                outcome.result = backend.generate(request, context)
            except BaseException as exc:  # noqa: BLE001 (handed to the test's thread)
                outcome.error = exc
            outcome.seconds = time.monotonic() - started

        thread = threading.Thread(target=run, name="conformance-generate", daemon=True)
        thread.start()
        thread.join(wait_s)
        outcome.finished = not thread.is_alive()
        return outcome

    @contextlib.contextmanager
    def _logs(self) -> Iterator[list[str]]:
        """Collect what is logged meanwhile: imagen's debug lines, everyone's info and up."""
        handler = _Records()
        root, own = logging.getLogger(), logging.getLogger("imagen")
        levels = root.level, own.level
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.WARNING, logging.INFO))
        own.setLevel(logging.DEBUG)
        try:
            yield handler.texts
        finally:
            root.removeHandler(handler)
            root.setLevel(levels[0])
            own.setLevel(levels[1])

    def _no_leak(self, probe: SecretProbe, texts: Mapping[str, Sequence[str] | str]) -> None:
        """Fail naming where a secret shows (and in which form), never showing it."""
        for where, values in texts.items():
            for text in [values] if isinstance(values, str) else values:
                found = probe.find(text)
                if found is not None:
                    pytest.fail(
                        f"{found} appears in {where}: keep credentials (and request headers) "
                        "out of messages and metadata",
                        pytrace=False,
                    )

    @staticmethod
    def _error_texts(error: BaseException) -> list[str]:
        """What a user can see of an error: its message, its arguments, its notes."""
        texts = [str(error), repr(error.args)]
        texts += [str(note) for note in getattr(error, "__notes__", [])]
        return texts

    @staticmethod
    def _ignored(result: Result) -> list[str]:
        ignored = result.metadata.get(IGNORED_KEY) or []
        return list(ignored) if isinstance(ignored, list) else []
