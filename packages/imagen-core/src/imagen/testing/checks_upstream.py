"""Checks of how a backend treats its upstream: cancelling, failing, hanging, resuming."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import pytest

from imagen.backend import Backend, BackendFactory
from imagen.errors import (
    BackendError,
    Cancelled,
    DeadlineExceeded,
    PermanentBackendError,
    RunLostError,
    TransientBackendError,
)
from imagen.request import Request
from imagen.testing.base import ConformanceBase
from imagen.testing.leaks import SecretProbe
from imagen.testing.recording import RecordingContext
from imagen.testing.standin import FailureKind, Traffic

__all__ = ["UpstreamChecks"]

PERMANENT_STATUSES = (400, 401, 403, 404, 422)
TRANSIENT_STATUSES = (429, 500, 502, 503)
_RETRY_NOW = {"Retry-After": "0"}  # what an overloaded upstream says; keeps the check quick


def _wait_for(predicate: Any, seconds: float) -> bool:
    """Poll ``predicate`` until it holds or ``seconds`` pass (the stand-in gives no event)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


class UpstreamChecks(ConformanceBase):
    """Cancellation reaches the upstream; failures are typed; nothing hangs or pays twice."""

    def _cancel_mid_run(
        self, backend: Backend, request: Request, upstream: Any, traffic: Traffic | None
    ) -> tuple[Any, RecordingContext]:
        """Start a slow run, cancel it once it is under way; return how it ended."""
        request = self.make_slow(upstream, request, self.slow_run_s)
        submitted = len(traffic.submissions) if traffic is not None else 0
        context = RecordingContext()
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["result"] = backend.generate(request, context)
            except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
                outcome["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        if traffic is not None:  # cancel once the run really reached the upstream
            _wait_for(lambda: len(traffic.submissions) > submitted, self.cancel_within_s)
        context.first_event.wait(min(5.0, self.slow_run_s / 4))  # let it get going upstream
        context.cancel()
        thread.join(self.cancel_within_s)
        if thread.is_alive():
            pytest.fail(
                f"generate was still running {self.cancel_within_s} s after cancel(): wait with "
                "context.wait(), and make blocking calls through imagen.run_blocking()"
            )
        return outcome, context

    def test_cancellation_mid_run_raises_cancelled_promptly(
        self, backend: Backend, base_request: Request, upstream: Any
    ) -> None:
        outcome, _ = self._cancel_mid_run(backend, base_request, upstream, None)
        assert "result" not in outcome, "generate returned images after it was cancelled"
        assert isinstance(outcome.get("error"), Cancelled), (
            f"expected Cancelled, got {outcome.get('error')!r}"
        )

    def test_cancellation_reaches_the_upstream(
        self, backend: Backend, base_request: Request, upstream: Any
    ) -> None:
        self._need_upstream(upstream)
        if not self.stops_upstream:
            pytest.skip(f"{type(self).__name__}.stops_upstream is False: nothing to tell")
        traffic = self.traffic(upstream)
        before = len(traffic.cancels)
        outcome, _ = self._cancel_mid_run(backend, base_request, upstream, traffic)
        assert isinstance(outcome.get("error"), Cancelled), (
            f"expected Cancelled, got {outcome.get('error')!r}"
        )
        if not _wait_for(lambda: len(traffic.cancels) > before, self.cancel_within_s):
            pytest.fail(
                "generate stopped waiting but never told the upstream, so the run goes on (and "
                "is paid for): call its cancel or interrupt endpoint when the context is "
                "cancelled (run_blocking(..., interrupt=...), or on Cancelled from "
                "context.wait()); set stops_upstream = False only if the upstream has no way"
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
        secret_probe: SecretProbe,
    ) -> None:
        request = self.make_failure(upstream, base_request, kind)
        raised: BaseException | None = None
        with self._logs() as logged:
            try:
                backend.generate(request, RecordingContext())
            except Exception as exc:  # noqa: BLE001 (an error of any type is what is checked)
                raised = exc
        if raised is None:
            pytest.fail(f"a {kind} upstream failure did not raise")
        self._no_leak(
            secret_probe, {f"the {kind} error": self._error_texts(raised), "a log line": logged}
        )
        if not isinstance(raised, error):
            pytest.fail(f"a {kind} upstream failure must raise {error.__name__}, not {raised!r}")

    @pytest.mark.parametrize("status", PERMANENT_STATUSES + TRANSIENT_STATUSES)
    def test_upstream_statuses_map_to_error_types(
        self,
        backend: Backend,
        base_request: Request,
        upstream: Any,
        status: int,
        secret_probe: SecretProbe,
    ) -> None:
        self._need_upstream(upstream)
        traffic = self.traffic(upstream)
        before = len(traffic.submissions)
        headers = _RETRY_NOW if status in (429, 503) else {}
        request = self.make_status(upstream, base_request, status, headers)
        try:
            result = backend.generate(request, RecordingContext())
        except Exception as exc:  # noqa: BLE001 (an error of any type is what is checked)
            self._no_leak(secret_probe, {f"the error for a {status}": self._error_texts(exc)})
            sent = len(traffic.submissions) - before
            if status in PERMANENT_STATUSES:
                if not isinstance(exc, PermanentBackendError):
                    pytest.fail(
                        f"the upstream answered {status}: that must raise PermanentBackendError "
                        f"(retrying won't help), not {type(exc).__name__}: {exc}"
                    )
                if sent != 1:
                    pytest.fail(f"a {status} was submitted {sent} times: it must not be retried")
            elif not isinstance(exc, TransientBackendError):
                pytest.fail(
                    f"the upstream answered {status} once: retry it with imagen.retry's policy, "
                    f"or raise TransientBackendError, not {type(exc).__name__}: {exc}"
                )
            return
        if status in PERMANENT_STATUSES:
            pytest.fail(f"the upstream answered {status}, yet generate returned images")
        self._images(result, base_request.count)

    def test_a_dropped_submission_is_not_repeated(
        self, backend: Backend, base_request: Request, upstream: Any
    ) -> None:
        self._need_upstream(upstream)
        traffic = self.traffic(upstream)
        before = len(traffic.submissions)
        request = self.make_drop(upstream, base_request)
        outcome = self._in_thread(backend, request, RecordingContext(), 60.0)
        sent = len(traffic.submissions) - before
        if sent > 1:
            pytest.fail(
                f"the upstream ran the request but the connection dropped before its answer, "
                f"and it was submitted {sent} times for one request: each one ran (and was "
                "billed). Mark the error TransientBackendError(..., sent=True) and let "
                "call_with_retry refuse to repeat it (safe_to_repeat only for lookups), or look "
                "the run up by an id you chose before submitting again"
            )
        if outcome.error is not None and not isinstance(outcome.error, BackendError):
            pytest.fail(
                f"a dropped connection must raise a BackendError, not "
                f"{type(outcome.error).__name__}: {outcome.error}"
            )
        assert outcome.finished, "generate was still running 60 s after the connection dropped"

    def test_a_hanging_upstream_times_out(
        self,
        backend_factory: BackendFactory,
        valid_slice: Mapping[str, Any],
        environ: Mapping[str, str],
        base_request: Request,
        upstream: Any,
    ) -> None:
        self._need_upstream(upstream)
        if self.timeout_key is None:
            pytest.fail(
                f"set {type(self).__name__}.timeout_key to the slice key that bounds how long "
                "one upstream call may go unanswered (timeout_s): without one, an upstream that "
                "hangs keeps `imagen generate` waiting for ever"
            )
        settings = {**valid_slice, self.timeout_key: self.hang_timeout_s}
        backend = backend_factory(self._config(settings, environ))
        try:
            request = self.make_hang(upstream, base_request)
            wait = self.hang_timeout_s + self.cancel_within_s
            outcome = self._in_thread(backend, request, RecordingContext(), wait)
            if not outcome.finished:
                pytest.fail(
                    f"the upstream never answered, and generate was still waiting {wait:g} s "
                    f"later with {self.timeout_key}: {self.hang_timeout_s:g}: give every upstream "
                    f"call a timeout from {self.timeout_key} (imagen.run_blocking(timeout_s=...) "
                    "or the HTTP client's)"
                )
            if outcome.error is None:
                assert outcome.result is not None
                self._images(outcome.result, base_request.count)  # it found its way round
            elif not isinstance(outcome.error, BackendError):
                pytest.fail(
                    "a call that timed out must raise TransientBackendError (sent=True; "
                    f"call_with_retry turns it into PossiblyBilledError), not {outcome.error!r}"
                )
        finally:
            backend.close()

    def test_the_context_deadline_ends_a_hanging_run(
        self, backend: Backend, base_request: Request, upstream: Any
    ) -> None:
        self._need_upstream(upstream)
        request = self.make_hang(upstream, base_request)
        wait = self.hang_timeout_s + self.cancel_within_s
        context = RecordingContext(deadline_s=self.hang_timeout_s)
        outcome = self._in_thread(backend, request, context, wait)
        if not outcome.finished:
            pytest.fail(
                f"the context's deadline ({self.hang_timeout_s:g} s) passed, and generate was "
                f"still waiting on a silent upstream {wait:g} s later: wait through "
                "imagen.run_blocking() or context.wait(), and bound timeouts with "
                "context.timeout(seconds)"
            )
        if not isinstance(outcome.error, DeadlineExceeded):
            pytest.fail(f"a passed deadline must raise DeadlineExceeded, not {outcome.error!r}")

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
        self._images(backend.generate(base_request, context), 1)
        assert context.run_ids, "a backend that offers resume must report the run id"
        other = backend_factory(self._config(valid_slice, environ, "conformance-2"))
        try:
            # A finished run: a new process (another instance) collects its images.
            self._images(other.resume(context.run_ids[-1], base_request, RecordingContext()), 1)
            # A run still going: re-attach while the first caller is still waiting on it.
            slow = self.make_slow(upstream, base_request, 2.0)
            first = RecordingContext()
            results: dict[str, Any] = {}
            thread = threading.Thread(
                target=lambda: results.update(first=backend.generate(slow, first)), daemon=True
            )
            thread.start()
            assert first.run_id_reported.wait(30), "no run id reported for the slow run"
            self._images(other.resume(first.run_ids[-1], slow, RecordingContext()), 1)
            thread.join(60)
            self._images(results["first"], 1)
            with pytest.raises(RunLostError):
                other.resume(str(uuid.uuid4()), base_request, RecordingContext())
        finally:
            other.close()
