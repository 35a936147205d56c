"""Blocking upstream calls that a cancelled context still stops: :func:`run_blocking`.

Most upstream calls block: an SDK's ``images.generate``, AUTOMATIC1111's
``POST /sdapi/v1/txt2img``, a long HTTP read. A backend cannot look at its context while
such a call runs, so it hands the call to :func:`run_blocking`, which runs it in a helper
thread and waits for whichever comes first:

- the call ends: its value is returned (or its exception raised) at that moment, with no
  polling interval in between;
- the context is cancelled: the backend's ``interrupt`` hook is called (tell the upstream
  to stop), and :class:`~imagen.errors.Cancelled` is raised; a context that was
  *detached* (the worker hands the run to another) raises it without the interrupt;
- the context's deadline passes: the same, raising :class:`~imagen.errors.DeadlineExceeded`;
- the call's own ``timeout_s`` passes: the same, raising
  :class:`~imagen.errors.TransientBackendError` with ``sent=True`` (the upstream may be
  working on it), which :func:`imagen.retry.call_with_retry` refuses to repeat for a paid
  call.

A call that is given up on keeps running in its (daemon) thread until it returns; its
result is dropped. An upstream that can stop a run (an interrupt endpoint, a cancel call)
should be told through ``interrupt``, so it stops working (and billing) too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from imagen.context import Context
from imagen.errors import Cancelled, DeadlineExceeded, TransientBackendError

__all__ = ["run_blocking"]

T = TypeVar("T")
log = logging.getLogger("imagen")


def run_blocking(
    call: Callable[[], T],
    context: Context,
    *,
    interrupt: Callable[[], object] | None = None,
    timeout_s: float | None = None,
    what: str = "the upstream call",
    settle_s: float = 1.0,
) -> T:
    """Run the blocking ``call``; return its value the moment it ends, or stop waiting early.

    :param call: the blocking call (an SDK call, an HTTP request), taking no arguments.
    :param context: the run's context: cancelling it, or its deadline passing, ends the
        wait at once.
    :param interrupt: the adapter's hook that tells the upstream to stop this run (POST its
        interrupt or cancel endpoint). Called, in the caller's thread, when the wait is
        given up for any reason; its errors are logged and ignored. Leave it None only
        when the upstream has no way to stop a run.
    :param timeout_s: the adapter's own limit on this call, in seconds (None: none).
        The context's deadline still applies: the wait ends at whichever comes first.
    :param what: the call in words, for messages ("generating the images").
    :param settle_s: after ``interrupt``, how long to wait for ``call`` to return (so its
        connection is released cleanly) before giving up on it.
    :raises Cancelled: the context was cancelled.
    :raises DeadlineExceeded: the context's deadline passed.
    :raises TransientBackendError: ``timeout_s`` passed (``sent=True``).
    """
    context.check()
    ended = threading.Event()  # set by the call's thread only
    wake = threading.Event()  # set by the call's thread, or by a cancellation
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 (handed back to the caller's thread)
            outcome["error"] = exc
        finally:
            ended.set()
            wake.set()

    unregister = context.on_cancel(wake.set)
    try:
        threading.Thread(target=run, name="imagen-blocking-call", daemon=True).start()
        wake.wait(context.timeout(timeout_s))
    finally:
        unregister()
    if ended.is_set():
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    if interrupt is not None and not context.detached:  # detached: another worker resumes
        try:
            interrupt()
        except Exception:
            log.debug("interrupting %s failed", what, exc_info=True)
        ended.wait(settle_s)
    told = (
        "the upstream was asked to stop"
        if interrupt is not None
        else "the upstream cannot be told to stop, so it may still finish (and bill it)"
    )
    if context.detached:
        raise Cancelled(f"detached while {what}; the upstream run goes on")
    if context.cancelled:
        raise Cancelled(f"cancelled while {what}; {told}")
    if context.deadline_passed:
        raise DeadlineExceeded(f"the deadline passed while {what}; {told}")
    asked = " (the upstream was asked to stop)" if interrupt is not None else ""
    raise TransientBackendError(f"{what}: no answer within {timeout_s:g} s{asked}", sent=True)
