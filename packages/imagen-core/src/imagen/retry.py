"""The one retry policy every adapter uses for transient upstream failures.

Transient failures (a connection error before the request was sent, 408, 429, a 5xx other
than 501) are retried with exponential backoff and jitter, within a bound on attempts and on
total time; a ``Retry-After`` the upstream sends is honoured up to a bound. Permanent
failures (other 4xx, 501, content policy, bad input) are never retried. Every retry is
reported through the context's progress (the CLI's progress line shows it) and logged
(``--verbose`` shows it).

A paid call is never retried blindly: when a request may have reached the upstream (it was
sent, then the connection dropped or timed out), it is retried only when the caller says
repeating it is safe (a lookup by an id we know). Otherwise the call fails with
:class:`~imagen.errors.PossiblyBilledError`, whose message says the call may have run
upstream (and been billed, on a paid service) and where to check.

Adapters turn off their SDK's own retries (the OpenAI SDK retries POSTs twice by default;
the Replicate SDK retries GETs up to 10 times) so that the two never multiply.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from imagen.backend import BackendConfig
from imagen.config import Setting
from imagen.context import Context, Progress
from imagen.errors import PossiblyBilledError, TransientBackendError

__all__ = [
    "DEFAULT_POLICY",
    "RETRY_SETTINGS",
    "RetryPolicy",
    "call_with_retry",
    "is_transient_status",
    "read_policy",
    "retry_after",
]

T = TypeVar("T")
log = logging.getLogger("imagen")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    :param max_attempts: attempts in all, the first included.
    :param max_total_s: no retry starts once this much time has passed since the first.
    :param base_delay_s: the first backoff; it doubles with each retry, with jitter.
    :param max_delay_s: the longest backoff.
    :param max_retry_after_s: the longest ``Retry-After`` honoured; an upstream asking for
        more is not retried (the error says how long it asked for).
    """

    max_attempts: int = 4
    max_total_s: float = 120.0
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_retry_after_s: float = 60.0

    def backoff(self, retry: int) -> float:
        """The pause before retry number ``retry`` (1 for the first), jittered."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (retry - 1))
        return ceiling * random.uniform(0.5, 1.0)


DEFAULT_POLICY = RetryPolicy()

RETRY_SETTINGS: dict[str, Setting] = {
    "retry_attempts": Setting(
        int,
        DEFAULT_POLICY.max_attempts,
        "attempts in all for a call that fails transiently (1: never retry)",
    ),
    "retry_max_s": Setting(
        float, DEFAULT_POLICY.max_total_s, "no retry starts after this many seconds"
    ),
}
"""The retry keys every adapter's slice accepts: add them to the slice's own settings."""


def read_policy(config: BackendConfig) -> RetryPolicy:
    """The policy an instance's slice asks for (its ``retry_*`` keys, or the defaults)."""
    attempts = config.get("retry_attempts", int, DEFAULT_POLICY.max_attempts)
    total = config.get("retry_max_s", float, DEFAULT_POLICY.max_total_s)
    if attempts < 1:
        raise config.error(f"must be 1 or more, not {attempts}", "retry_attempts")
    if total < 0:
        raise config.error(f"must not be negative, not {total}", "retry_max_s")
    return RetryPolicy(max_attempts=attempts, max_total_s=total)


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying: 408, 429 and 5xx, but 501.

    501 Not Implemented says the server does not do what was asked at all: asking again
    gets the same answer.
    """
    return status in (408, 429) or (500 <= status <= 599 and status != 501)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds an HTTP response asks us to wait (``retry-after-ms``, ``Retry-After``), if any."""
    lowered = {key.lower(): value for key, value in headers.items()}
    millis = lowered.get("retry-after-ms", "").strip()
    try:
        if millis:
            return max(0.0, float(millis) / 1000)
    except ValueError:
        pass
    value = lowered.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import email.utils  # here: it costs a start ~6 ms (socket, calendar) for a rare header

        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def call_with_retry(
    call: Callable[[], T],
    *,
    what: str,
    context: Context | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    safe_to_repeat: bool = False,
    where_to_check: str = "the upstream's queue, history or usage page",
) -> T:
    """Run ``call``, retrying it on :class:`~imagen.errors.TransientBackendError`.

    :param what: the call, for messages ("creating the prediction").
    :param context: waits between attempts end at once when it is cancelled.
    :param safe_to_repeat: the call may be repeated even after it reached the upstream
        (a lookup by a known id). When False, a failure with ``sent=True`` is not retried
        and becomes :class:`~imagen.errors.PossiblyBilledError`.
    :param where_to_check: where the user sees whether the call ran, for that error's
        message ("OpenAI's usage dashboard", "ComfyUI's queue and history").
    """
    started = time.monotonic()
    attempt = 1
    while True:
        try:
            return call()
        except TransientBackendError as exc:
            if exc.sent and not safe_to_repeat:
                raise PossiblyBilledError(
                    f"{what} failed after the request was sent ({exc.message}); the upstream "
                    "may have run it (and billed it, on a paid service), so it was not "
                    f"repeated: check {where_to_check} before trying again",
                    backend=exc.backend,
                    upstream_id=exc.upstream_id,
                ) from exc
            delay = _next_delay(policy, exc, attempt, started, what)
            note = f"retry {attempt} of {policy.max_attempts - 1} in {delay:.1f} s: {exc.message}"
            log.info("%s failed; %s", what, note)
            if context is not None:
                context.progress(Progress("status", message=note))
                context.wait(delay)
            else:
                time.sleep(delay)
            attempt += 1


def _next_delay(
    policy: RetryPolicy, exc: TransientBackendError, attempt: int, started: float, what: str
) -> float:
    """The pause before the next attempt; re-raises ``exc`` (annotated) when there is none."""
    if exc.retry_after is not None and exc.retry_after > policy.max_retry_after_s:
        exc.message += (
            f" (the upstream asked to wait {exc.retry_after:.0f} s, longer than the "
            f"{policy.max_retry_after_s:.0f} s imagen waits; not retried)"
        )
        raise exc
    if attempt >= policy.max_attempts:
        exc.message += f" (gave up after {attempt} attempts)"
        raise exc
    delay = exc.retry_after if exc.retry_after is not None else policy.backoff(attempt)
    if time.monotonic() - started + delay > policy.max_total_s:
        exc.message += f" (gave up after {attempt} attempts in {policy.max_total_s:.0f} s)"
        raise exc
    return delay
