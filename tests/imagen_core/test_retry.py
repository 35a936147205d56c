"""The shared retry policy."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from imagen import (
    Cancelled,
    Context,
    PermanentBackendError,
    PossiblyBilledError,
    TransientBackendError,
)
from imagen.retry import RetryPolicy, call_with_retry, is_transient_status, retry_after

FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.02)


class Flaky:
    def __init__(self, *errors: Exception, result: str = "ok") -> None:
        self.errors = list(errors)
        self.calls = 0
        self.result = result

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def test_transient_failures_are_retried_until_success():
    call = Flaky(TransientBackendError("503"), TransientBackendError("503"))
    assert call_with_retry(call, what="creating", policy=FAST) == "ok"
    assert call.calls == 3


def test_attempts_are_bounded():
    call = Flaky(*(TransientBackendError("503") for _ in range(5)))
    with pytest.raises(TransientBackendError, match=r"503 \(gave up after 3 attempts\)"):
        call_with_retry(call, what="creating", policy=FAST)
    assert call.calls == 3


def test_total_time_is_bounded():
    policy = RetryPolicy(max_attempts=10, base_delay_s=0.2, max_delay_s=0.2, max_total_s=0.3)
    call = Flaky(*(TransientBackendError("503") for _ in range(10)))
    with pytest.raises(TransientBackendError, match=r"gave up after \d attempts in 0 s"):
        call_with_retry(call, what="x", policy=policy)
    assert call.calls < 10


def test_retry_after_is_honoured_and_bounded():
    call = Flaky(TransientBackendError("429", retry_after=0.3))
    started = time.monotonic()
    call_with_retry(call, what="x", policy=FAST)
    assert (
        time.monotonic() - started >= 0.3
    )  # waited what the upstream asked, not the 0.02 s backoff
    call = Flaky(TransientBackendError("429", retry_after=300))
    with pytest.raises(
        TransientBackendError, match="asked to wait 300 s, longer than the 60 s imagen waits"
    ):
        call_with_retry(call, what="x")
    assert call.calls == 1


def test_permanent_errors_are_never_retried():
    call = Flaky(PermanentBackendError("422 bad input"))
    with pytest.raises(PermanentBackendError):
        call_with_retry(call, what="x", policy=FAST)
    assert call.calls == 1


def test_a_sent_paid_call_is_not_retried_and_says_it_may_be_billed():
    call = Flaky(TransientBackendError("read timed out", sent=True, backend="r"))
    with pytest.raises(PossiblyBilledError) as raised:
        call_with_retry(call, what="creating the prediction", policy=FAST)
    assert call.calls == 1
    assert str(raised.value) == (
        'backend "r": creating the prediction failed after the request was sent (read timed '
        "out); the upstream may have run it (and billed it, on a paid service), so it was "
        "not repeated: check the upstream's queue, history or usage page before trying again"
    )


def test_the_possibly_billed_message_fits_a_self_hosted_upstream():
    call = Flaky(TransientBackendError("read timed out", sent=True))
    with pytest.raises(PossiblyBilledError) as raised:
        call_with_retry(
            call, what="queueing the prompt", policy=FAST, where_to_check="ComfyUI's queue"
        )
    assert "check ComfyUI's queue before trying again" in str(raised.value)
    assert "dashboard" not in str(raised.value)
    lookup = Flaky(TransientBackendError("read timed out", sent=True))
    assert call_with_retry(lookup, what="polling", policy=FAST, safe_to_repeat=True) == "ok"


def test_cancellation_ends_the_wait():
    context = Context()
    call = Flaky(TransientBackendError("503", retry_after=30))
    threading.Timer(0.1, context.cancel).start()
    with pytest.raises(Cancelled):
        call_with_retry(call, what="x", context=context)


def test_retry_after_headers():
    assert retry_after({"Retry-After": "2"}) == 2.0
    assert retry_after({"retry-after": "1.5"}) == 1.5
    assert retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < retry_after({"Retry-After": later}) <= 30
    assert retry_after({}) is None
    assert retry_after({"Retry-After": "soon"}) is None


def test_transient_statuses():
    assert [
        s
        for s in (400, 401, 404, 408, 409, 422, 429, 500, 501, 502, 503, 504)
        if is_transient_status(s)
    ] == [408, 429, 500, 502, 503, 504]  # 501 Not Implemented stays so: never retried
