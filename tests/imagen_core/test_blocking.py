"""run_blocking: a blocking upstream call that cancellation, deadlines and timeouts end."""

from __future__ import annotations

import threading

import pytest

from imagen import (
    Cancelled,
    Context,
    DeadlineExceeded,
    PossiblyBilledError,
    TransientBackendError,
    run_blocking,
)
from imagen.retry import RetryPolicy, call_with_retry


def test_the_value_comes_back_without_the_context_being_polled(monkeypatch):
    # No polling interval: the wait ends when the call ends, not at the next tick.
    def no_polling(self, seconds):
        raise AssertionError("run_blocking must not poll the context")

    monkeypatch.setattr(Context, "wait", no_polling)
    monkeypatch.setattr(Context, "check", lambda self: None)
    release = threading.Event()
    threading.Timer(0.05, release.set).start()
    assert run_blocking(lambda: release.wait() and "done", Context()) == "done"


def test_the_calls_exception_is_raised_in_the_callers_thread():
    def call():
        raise TransientBackendError("503", sent=False)

    with pytest.raises(TransientBackendError, match="503"):
        run_blocking(call, Context())


def test_cancelling_interrupts_the_upstream_and_raises_cancelled():
    release = threading.Event()
    interrupted = []
    context = Context()

    def interrupt():
        interrupted.append(threading.current_thread().name)
        release.set()  # the upstream stops; the blocking call returns

    threading.Timer(0.05, context.cancel).start()
    with pytest.raises(Cancelled, match="the upstream was asked to stop"):
        run_blocking(release.wait, context, interrupt=interrupt, what="sampling")
    assert interrupted == [threading.current_thread().name]  # in the caller's thread


def test_an_upstream_that_cannot_stop_is_said_to_maybe_bill():
    context = Context()
    hold = threading.Event()
    threading.Timer(0.05, context.cancel).start()
    with pytest.raises(Cancelled, match="may still finish"):
        run_blocking(hold.wait, context)
    hold.set()


def test_an_already_cancelled_context_never_starts_the_call():
    context = Context()
    context.cancel()
    calls = []
    with pytest.raises(Cancelled):
        run_blocking(lambda: calls.append(1), context)
    assert calls == []


def test_the_deadline_ends_the_wait():
    hold = threading.Event()
    interrupted = []
    with pytest.raises(DeadlineExceeded):
        run_blocking(hold.wait, Context(deadline_s=0.05), interrupt=lambda: interrupted.append(1))
    assert interrupted == [1]
    hold.set()


def test_the_adapters_timeout_is_a_sent_transient_error():
    hold = threading.Event()
    with pytest.raises(TransientBackendError) as raised:
        run_blocking(hold.wait, Context(), timeout_s=0.05, what="generating")
    assert raised.value.sent
    assert "generating: no answer within 0.05 s" in str(raised.value)
    hold.set()


def test_a_timed_out_paid_call_is_not_repeated():
    calls = []
    hold = threading.Event()

    def call():
        calls.append(1)
        hold.wait()

    with pytest.raises(PossiblyBilledError, match=r"no answer within 0\.05 s"):
        call_with_retry(
            lambda: run_blocking(call, Context(), timeout_s=0.05),
            what="generating",
            policy=RetryPolicy(base_delay_s=0.0),
        )
    hold.set()
    assert calls == [1]


def test_the_earlier_of_deadline_and_timeout_wins():
    context = Context(deadline_s=60)
    assert context.timeout(5) == 5
    assert Context(deadline_s=0.5).timeout(5) <= 0.5
    assert Context().timeout(None) is None
    assert Context(deadline_s=2).timeout(None) <= 2


def test_a_failing_interrupt_does_not_hide_the_cancellation():
    context = Context()
    hold = threading.Event()

    def interrupt():
        raise OSError("connection refused")

    threading.Timer(0.05, context.cancel).start()
    with pytest.raises(Cancelled):
        run_blocking(hold.wait, context, interrupt=interrupt, settle_s=0)
    hold.set()


def test_on_cancel_listeners_run_once_registered_and_can_be_removed():
    context = Context()
    seen = []
    remove = context.on_cancel(lambda: seen.append("a"))
    context.on_cancel(lambda: seen.append("b"))
    remove()
    context.cancel()
    assert seen == ["b"]
    context.on_cancel(lambda: seen.append("late"))  # already cancelled: runs at once
    assert seen == ["b", "late"]


def test_a_detached_context_stops_waiting_but_leaves_the_upstream_run():
    context = Context()
    hold = threading.Event()
    interrupted = []
    threading.Timer(0.05, context.detach).start()
    with pytest.raises(Cancelled, match="detached while"):
        run_blocking(hold.wait, context, interrupt=lambda: interrupted.append(1), settle_s=0)
    assert interrupted == []
    hold.set()
