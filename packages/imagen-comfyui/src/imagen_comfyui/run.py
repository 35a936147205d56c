"""Following one ComfyUI run to its end: websocket events, with /history and /queue behind them.

The run's prompt_id doubles as the websocket client id, so whoever knows the run (this
process after a reconnect, another one resuming it) hears its events. The end of the run
is its ``executing`` null event or its ``/history`` entry, whichever is seen first. When
the socket drops or falls silent, the run is looked up in ``/history`` and ``/queue``; it
is lost only when it is in neither. A server that stops answering at all is retried for
``unreachable_s``, then given up on: the run may still finish there, to be resumed.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import websocket

from imagen import (
    Cancelled,
    Context,
    CredentialRejectedError,
    PermanentBackendError,
    Progress,
    RunLostError,
    TransientBackendError,
    run_blocking,
)
from imagen_comfyui.client import ComfyClient
from imagen_comfyui.settings import ComfyUISettings

__all__ = ["RunFollower", "RunResult"]

_TICK = 0.5  # seconds between cancellation checks while waiting on the socket
_LOST_GRACE_S = 3.0  # how long a run may be missing from /queue before it counts as lost
_UNREACHABLE_POLL_S = 1.0  # between attempts to reach a server that stopped answering
T = TypeVar("T")


@dataclass
class RunResult:
    """A finished run: its output images (``/view`` parameters) and timings."""

    outputs: list[dict[str, Any]]
    queue_s: float | None = None
    execution_s: float | None = None
    history: dict[str, Any] = field(default_factory=dict)


class RunFollower:
    """Follows run ``prompt_id`` through events, reconnecting and polling as needed."""

    def __init__(
        self,
        client: ComfyClient,
        settings: ComfyUISettings,
        prompt_id: str,
        context: Context,
        graph: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.prompt_id = prompt_id
        self.context = context
        self.graph = graph or {}
        self.socket: websocket.WebSocket | None = None
        self.started = False
        self.cancelling = False
        self.outputs: list[dict[str, Any]] = []
        self.created = time.monotonic()
        self.submitted_at = self.created
        self.started_at: float | None = None
        self.last_news = time.monotonic()
        self.last_frame = time.monotonic()
        self._position: int | None = None
        self._unreachable_since: float | None = None
        self.executed_outputs: list[str] | None = None
        """The output nodes ComfyUI queued for the run (from its queue or history entry)."""
        self.server_graph: dict[str, Any] | None = None
        """The graph ComfyUI holds for the run (from the same entry), as it was submitted."""
        self._stopped = False

    def stop_upstream(self) -> None:
        """Take the run off ComfyUI's queue, or interrupt it (once; never when detached)."""
        if self._stopped or self.context.detached:  # detached: another follower takes it on
            return
        self._stopped = True
        self.cancelling = True
        self.client.cancel(self.prompt_id)

    def _call(self, call: Callable[[], T]) -> T:
        """An HTTP call that a cancel or the deadline ends at once, stopping the run."""
        return run_blocking(call, self.context, interrupt=self.stop_upstream, what="following")

    # -- the socket ---------------------------------------------------------------------

    def connect(self) -> None:
        """Open the websocket (the run's id is the client id); failures are transient."""
        self.close()
        headers = [f"{name}: {value}" for name, value in self.settings.headers.items()]
        try:
            self.socket = websocket.create_connection(
                self.client.ws_url(self.prompt_id),
                timeout=self.settings.connect_timeout_s,
                header=headers,
                enable_multithread=True,
            )
        except websocket.WebSocketBadStatusException as exc:
            self.socket = None
            if exc.status_code in (401, 403):
                raise CredentialRejectedError(
                    f"ComfyUI at {self.client.base_url} refused the websocket "
                    f"({exc.status_code}): check `headers` and `token_env`"
                ) from exc
            raise TransientBackendError(
                f"ComfyUI's websocket at {self.client.base_url} answered {exc.status_code}"
            ) from exc
        except (OSError, websocket.WebSocketException) as exc:
            self.socket = None
            raise TransientBackendError(
                f"cannot reach ComfyUI at {self.client.base_url}: {exc}"
            ) from exc
        self.socket.settimeout(_TICK)
        self.last_frame = time.monotonic()

    def close(self) -> None:
        if self.socket is not None:
            with contextlib.suppress(OSError, websocket.WebSocketException):
                self.socket.close(timeout=1)
            # close() does nothing on a connection already seen to drop: free the socket too.
            self.socket.shutdown()
            self.socket = None

    # -- following ------------------------------------------------------------------------

    def follow(self) -> RunResult:
        """Block until the run ends; return its outputs, or raise why it didn't.

        Cancelled through the context, or stopped by a KeyboardInterrupt (a second Ctrl-C),
        it removes the run from ComfyUI's queue or interrupts it before it gives up; a
        detached context leaves the run going, for whoever resumes it.
        """
        try:
            while True:
                self.context.check()
                done = self._next_frame() if self.socket is not None else self._check_server()
                if done is not None:
                    return done
                if self._unreachable_since is None:
                    self._check_idle()
        except Cancelled:
            self.stop_upstream()
            raise
        except KeyboardInterrupt:
            # The caller stops at once, but the run must not go on, paid for, on the server.
            self.client.cancel(self.prompt_id)
            raise
        finally:
            self.close()

    def _next_frame(self) -> RunResult | None:
        assert self.socket is not None
        try:
            opcode, data = self.socket.recv_data()
        except websocket.WebSocketTimeoutException:
            if time.monotonic() - self.last_frame >= self.settings.silence_s:
                self.last_frame = time.monotonic()
                return self._check_server()
            return None
        except (OSError, websocket.WebSocketException):
            self.close()  # dropped: the next turn looks the run up, then reconnects
            return None
        self.last_frame = time.monotonic()
        if opcode != websocket.ABNF.OPCODE_TEXT:
            return None  # binary frames are previews, never outputs
        try:
            message = json.loads(data)
        except ValueError:
            return None
        return self._handle(message.get("type"), message.get("data") or {})

    def _handle(self, kind: str | None, data: dict[str, Any]) -> RunResult | None:
        ours = data.get("prompt_id") == self.prompt_id
        if kind == "status":
            if not self.started:
                self._report_queue()
            return None
        if not ours:
            return None
        self.last_news = time.monotonic()
        if kind == "execution_start":
            self._start()
        elif kind == "executing":
            if data.get("node") is None:
                return self._finish()
            self._start()
            self.context.progress(Progress("status", message=self._name(data.get("node"))))
        elif kind == "progress":
            self._start()
            value, total = int(data.get("value", 0)), int(data.get("max", 0))
            self.context.progress(
                Progress("step", min(value, total), total, self._name(data.get("node")))
            )
        elif kind == "executed":
            self.outputs += (data.get("output") or {}).get("images") or []
        elif kind in ("execution_error", "execution_interrupted"):
            self._fail(kind, data)
        elif kind == "execution_success":
            return self._finish()
        return None

    def _start(self) -> None:
        if not self.started:
            self.started = True
            self.started_at = time.monotonic()
            self.context.progress(Progress("started"))

    def _name(self, node: Any) -> str:
        entry = self.graph.get(str(node)) or {}
        return (entry.get("_meta") or {}).get("title") or entry.get("class_type") or str(node)

    def _report_queue(self) -> None:
        try:
            queue = self._call(self.client.queue)
        except TransientBackendError:
            return
        entries = sorted(
            queue.get("queue_running", []) + queue.get("queue_pending", []),
            key=lambda entry: entry[0],
        )
        ids = [entry[1] for entry in entries]
        if self.prompt_id in ids and ids.index(self.prompt_id) != self._position:
            self._position = ids.index(self.prompt_id)
            if any(entry[1] == self.prompt_id for entry in queue.get("queue_running", [])):
                self._start()
            else:
                self.context.progress(Progress("queued", self._position))

    # -- the server's view of the run -----------------------------------------------------

    def _check_server(self) -> RunResult | None:
        """Look the run up in /history and /queue; reconnect the socket if it dropped."""
        try:
            entry = self._call(lambda: self.client.history(self.prompt_id))
            if entry is not None:
                return self._from_history(entry)
            queue = self._call(self.client.queue)
        except TransientBackendError as exc:
            self._unreachable(exc)
            return None
        if self._unreachable_since is not None:
            self._unreachable_since = None
            self.context.progress(Progress("status", message="reached ComfyUI again"))
        running = [e for e in queue.get("queue_running", []) if e[1] == self.prompt_id]
        pending = [e for e in queue.get("queue_pending", []) if e[1] == self.prompt_id]
        if not running and not pending:
            # The socket may have missed the end: ask history once more before calling it lost.
            entry = self._call(lambda: self.client.history(self.prompt_id))
            if entry is not None:
                return self._from_history(entry)
            if time.monotonic() - self.created < _LOST_GRACE_S:
                # Its submission may still be on its way (the id is reported before the
                # POST, so a resume can start first): look again before calling it lost.
                self.context.wait(0.2)
                return None
            raise RunLostError(
                f"run {self.prompt_id} was lost: ComfyUI has it neither queued, running nor in "
                "its history (was the server restarted?)",
                upstream_id=self.prompt_id,
            )
        self._note_outputs((running or pending)[0])
        if running:
            self._start()
        if self.socket is None:
            try:
                self.connect()
            except TransientBackendError:
                self.context.wait(min(2.0, self.settings.silence_s))
        return None

    def _unreachable(self, exc: TransientBackendError) -> None:
        """ComfyUI did not answer: wait and try again, up to ``unreachable_s`` in all."""
        self.close()
        now = time.monotonic()
        if self._unreachable_since is None:
            self._unreachable_since = now
            self.context.progress(Progress("status", message="cannot reach ComfyUI; trying again"))
        waited = now - self._unreachable_since
        limit = self.settings.unreachable_s
        if waited >= limit:
            raise TransientBackendError(
                f"{exc.message}; gave up after {waited:.0f} s (unreachable_s is {limit:g}): "
                f"run {self.prompt_id} may still finish there",
                upstream_id=self.prompt_id,
            ) from exc
        self.context.wait(min(_UNREACHABLE_POLL_S, limit - waited))

    def _note_outputs(self, entry: Any) -> None:
        """Keep the graph and output nodes a queue or history entry says the run executes."""
        if isinstance(entry, list) and len(entry) > 4 and isinstance(entry[4], list):
            self.executed_outputs = [str(node) for node in entry[4]]
            if isinstance(entry[2], dict):
                self.server_graph = entry[2]

    def _finish(self) -> RunResult | None:
        """The end event arrived: history has the authoritative outputs."""
        for _ in range(10):
            try:
                entry = self._call(lambda: self.client.history(self.prompt_id))
            except TransientBackendError:
                self.close()  # gone right at the end: look it up as for a dropped socket
                return None
            if entry is not None:
                return self._from_history(entry)
            self.context.wait(0.1)  # history is written right around the end event
        return self._result(self.outputs, {})

    def _from_history(self, entry: dict[str, Any]) -> RunResult:
        self._note_outputs(entry.get("prompt"))
        status = entry.get("status") or {}
        if status.get("status_str") == "error":
            for kind, data in status.get("messages") or []:
                if kind in ("execution_error", "execution_interrupted"):
                    self._fail(kind, data)
            raise PermanentBackendError(
                f"run {self.prompt_id} failed on the ComfyUI server", upstream_id=self.prompt_id
            )
        outputs = [
            image
            for node in (entry.get("outputs") or {}).values()
            for image in node.get("images") or []
        ]
        return self._result(outputs, entry)

    def _result(self, outputs: list[dict[str, Any]], history: dict[str, Any]) -> RunResult:
        saved = [image for image in outputs if image.get("type") == "output"]
        chosen = saved or outputs  # PreviewImage ("temp") outputs only when nothing was saved
        if not chosen:
            raise PermanentBackendError(
                f"run {self.prompt_id} finished without an image output: the workflow needs a "
                "SaveImage (or PreviewImage) node",
                upstream_id=self.prompt_id,
            )
        self._start()
        self.context.progress(Progress("finished"))
        now = time.monotonic()
        queue_s = (self.started_at - self.submitted_at) if self.started_at else None
        execution_s = now - self.started_at if self.started_at else None
        return RunResult(chosen, queue_s, execution_s, history)

    def _check_idle(self) -> None:
        idle = time.monotonic() - self.last_news
        if self.started and idle > self.settings.idle_timeout_s:
            raise TransientBackendError(
                f"run {self.prompt_id} showed no progress for {idle:.0f} s "
                f"(idle_timeout_s is {self.settings.idle_timeout_s:g})",
                upstream_id=self.prompt_id,
            )

    def _fail(self, kind: str, data: dict[str, Any]) -> None:
        """Raise what an ``execution_error`` or ``execution_interrupted`` message means."""
        if kind == "execution_interrupted":
            if self.cancelling:
                raise Cancelled()
            raise PermanentBackendError(
                f"run {self.prompt_id} was interrupted on the ComfyUI server",
                upstream_id=self.prompt_id,
            )
        raise PermanentBackendError(self._execution_error(data), upstream_id=self.prompt_id)

    def _execution_error(self, data: dict[str, Any]) -> str:
        node = data.get("node_id")
        name = self._name(node) if node is not None else "?"
        kind = data.get("node_type") or "?"
        return (
            f'ComfyUI failed in node {node} ({kind} "{name}"): '
            f"{data.get('exception_type', 'error')}: {str(data.get('exception_message', '')).strip()}"
        )
