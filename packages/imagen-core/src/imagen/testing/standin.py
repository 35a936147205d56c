"""The stand-in contract: what the suite asks of an upstream's loopback stand-in.

A stand-in built on :class:`~imagen.testing.LoopbackServer` gets the generic part for free
(it records every request, and can hang, drop or answer any status for the next
submission); it declares which requests are submissions and cancels, and implements the
two controls that need its protocol, ``fail_next`` and ``slow_next``. Any other server
(aiohttp, a real upstream in a container) implements :class:`StandIn` itself.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = ["Exchange", "FailureKind", "StandIn", "Traffic"]

FailureKind = Literal["transient", "permanent"]


@dataclass(frozen=True)
class Exchange:
    """One request that reached the stand-in.

    :param method: the HTTP method (``POST``).
    :param path: the path, without the query string.
    :param headers: the request's headers.
    :param body: the request's body, as sent.
    """

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class Traffic:
    """What reached a stand-in: every request, and among them submissions and cancels.

    A *submission* is a request that starts (and may bill) a run: ``POST /v1/runs``,
    ``POST /sdapi/v1/txt2img``, ``POST /prompt``. A *cancel* asks the upstream to stop one:
    a cancel call, an interrupt, a queue deletion. Thread-safe: handlers record from their
    threads while the suite reads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Exchange] = []
        self._submissions: list[Exchange] = []
        self._cancels: list[Exchange] = []
        self._inputs: list[str] = []

    def record(self, exchange: Exchange, *, submission: bool = False, cancel: bool = False) -> None:
        """Record ``exchange``, as a submission or a cancel when it is one."""
        with self._lock:
            self._requests.append(exchange)
            if submission:
                self._submissions.append(exchange)
            if cancel:
                self._cancels.append(exchange)

    def record_input(self, data: bytes) -> None:
        """Record an input image the stand-in received, by the SHA-256 of its bytes.

        Call it where your protocol takes input images (an upload route, a multipart part,
        a data URL), with the file's bytes as the upstream would store them: the suite's
        input checks look for each input's SHA-256 here. Input files sent as they are in
        a request's body (raw or base64) are found without it.
        """
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._inputs.append(digest)

    @property
    def inputs(self) -> list[str]:
        """The SHA-256 (hex) of each input image recorded with :meth:`record_input`."""
        with self._lock:
            return list(self._inputs)

    @property
    def requests(self) -> list[Exchange]:
        """Every request, in order of arrival."""
        with self._lock:
            return list(self._requests)

    @property
    def submissions(self) -> list[Exchange]:
        """The requests that start a run."""
        with self._lock:
            return list(self._submissions)

    @property
    def cancels(self) -> list[Exchange]:
        """The requests that ask the upstream to stop a run."""
        with self._lock:
            return list(self._cancels)


class StandIn(Protocol):
    """What the suite asks of an upstream stand-in.

    Each method is needed only by the checks that use it; a stand-in that lacks one is
    told which to add (or which :class:`~imagen.testing.BackendConformance` method to
    override instead).
    """

    traffic: Traffic
    """What reached the stand-in (input images in ``traffic.record_input``, if any)."""

    def fail_next(self, kind: FailureKind) -> None:
        """Make the next run fail the way the real upstream fails ``kind``-ly (a 503, a 422).

        A transient failure should last longer than any retry policy waits (a storm).
        """

    def slow_next(self, seconds: float) -> None:
        """Make the next run take at least ``seconds`` upstream (queued or running)."""

    def hang_next(self) -> None:
        """Receive the next submission whole, then never answer it (until the stand-in stops)."""

    def drop_next(self) -> None:
        """Run the next submission, then close its connection before answering.

        The run happened upstream (and would be billed); only its answer is lost.
        """

    def answer_next(
        self, status: int, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next submission with ``status`` (and ``body``) instead of running it."""
