"""ComfyUI's HTTP API through httpx, its failures translated into imagen's errors."""

from __future__ import annotations

import json
import mimetypes
import ssl
from collections.abc import Iterator
from typing import Any, BinaryIO

import httpx

from imagen import (
    CredentialRejectedError,
    GeneratedImage,
    PermanentBackendError,
    TransientBackendError,
)
from imagen.retry import is_transient_status, retry_after
from imagen_comfyui.settings import ComfyUISettings

__all__ = ["ComfyClient", "choices", "node_name"]

_CHUNK = 1 << 16
_CANCEL_TIMEOUT_S = 2.0


def _no_tls() -> ssl.SSLContext:
    """The TLS context of a client whose server speaks plain HTTP: one that trusts no one.

    httpx's default loads the whole CA bundle (~25 ms a run) for a TLS connection that an
    http:// ComfyUI never makes; this one is built at no cost and, should TLS ever happen
    (it cannot: redirects are not followed), it fails closed instead of trusting anything.
    """
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, with no CA to verify against


def choices(config: Any) -> list[str] | None:
    """The allowed values of a combo input's definition, in either of ComfyUI's formats."""
    if isinstance(config, list) and config:
        if isinstance(config[0], list):
            return [str(c) for c in config[0]]
        if config[0] == "COMBO" and len(config) > 1 and isinstance(config[1], dict):
            return [str(c) for c in config[1].get("options", [])]
    return None


class ComfyClient:
    """One ComfyUI server's HTTP endpoints."""

    def __init__(self, settings: ComfyUISettings) -> None:
        self.base_url = settings.base_url
        self.http = httpx.Client(
            base_url=settings.base_url,
            headers=settings.headers,
            timeout=httpx.Timeout(settings.http_timeout_s, connect=settings.connect_timeout_s),
            verify=True if settings.base_url.startswith("https:") else _no_tls(),
        )

    def close(self) -> None:
        self.http.close()

    def ws_url(self, client_id: str) -> str:
        scheme = "wss" if self.base_url.startswith("https") else "ws"
        return f"{scheme}{self.base_url[self.base_url.index(':') :]}/ws?clientId={client_id}"

    # -- calls --------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TransientBackendError(
                f"ComfyUI at {self.base_url} did not answer {method} {path} in time",
                sent=not isinstance(exc, httpx.ConnectTimeout),
            ) from exc
        except httpx.TransportError as exc:
            raise TransientBackendError(
                f"cannot reach ComfyUI at {self.base_url}: {_reason(exc)}"
            ) from exc
        status = response.status_code
        if is_transient_status(status):
            raise TransientBackendError(
                f"ComfyUI at {self.base_url} answered {method} {path} with {status}",
                retry_after=retry_after(response.headers),
            )
        if status in (401, 403):
            raise CredentialRejectedError(
                f"ComfyUI at {self.base_url} refused {method} {path} ({status}): check "
                "`headers` and `token_env`"
            )
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code == 404:
            raise PermanentBackendError(
                f"{self.base_url}{path} was not found: is this a ComfyUI server?"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise TransientBackendError(f"ComfyUI sent non-JSON for {method} {path}") from exc

    def system_stats(self) -> dict[str, Any]:
        return self._json("GET", "/system_stats")

    def object_info(self, class_type: str) -> dict[str, Any]:
        return self._json("GET", f"/object_info/{class_type}").get(class_type) or {}

    def submit(self, graph: dict[str, Any], prompt_id: str, client_id: str) -> dict[str, Any]:
        """Queue ``graph`` under ``prompt_id``; a rejection is a PermanentBackendError.

        The answer's ``node_errors`` may be non-empty even so: ComfyUI runs the outputs
        that validated and leaves out the others (see :meth:`skipped_outputs`).
        """
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        response = self._request("POST", "/prompt", json=body)
        if response.status_code == 400:
            try:
                detail = response.json()
            except ValueError:
                detail = {"error": {"message": response.text[:200]}}
            raise PermanentBackendError(self._rejection(detail, graph), upstream_id=prompt_id)
        if response.status_code >= 400:
            raise PermanentBackendError(
                f"ComfyUI answered POST /prompt with {response.status_code}"
            )
        try:
            answer = response.json()
        except ValueError:
            return {}  # queued all the same: the run is followed by its id
        return answer if isinstance(answer, dict) else {}

    def input_size(self, name: str, subfolder: str) -> int | None:
        """The size of file ``name`` in ComfyUI's input folder, or None when it isn't there.

        A ``HEAD /view``: nothing is downloaded.
        """
        params = {"filename": name, "subfolder": subfolder, "type": "input"}
        response = self._request("HEAD", "/view", params=params)
        if response.status_code != 200:
            return None
        try:
            return int(response.headers["Content-Length"])
        except (KeyError, ValueError):
            return None

    def upload(
        self,
        stream: BinaryIO,
        name: str,
        mime_type: str,
        subfolder: str,
        *,
        original: dict[str, str] | None = None,
    ) -> dict[str, str]:
        """Send ``stream`` to ComfyUI's input folder as ``subfolder/name``; where it landed.

        ``POST /upload/image``, or with ``original`` (the ``{filename, subfolder, type}`` of
        an uploaded image) ``POST /upload/mask``, which stores that image with the upload's
        alpha channel as its own. The file is streamed from ``stream``, never read whole.
        ``overwrite`` is off: ComfyUI keeps a file of the same name and bytes and answers
        with its name, and gives a different file of the same name a new one
        (``name (1).png``), so the answer's ``name`` is what a LoadImage must be given.
        """
        data = {"type": "input", "subfolder": subfolder, "overwrite": "false"}
        path = "/upload/image"
        if original is not None:
            path = "/upload/mask"
            data["original_ref"] = json.dumps(original)
        response = self._request(
            "POST", path, data=data, files={"image": (name, stream, mime_type)}
        )
        if response.status_code == 413:
            raise PermanentBackendError(
                f"ComfyUI refused an input as too large ({path} answered 413): raise the "
                "server's --max-upload-size (100 MB by default) or send a smaller image"
            )
        if response.status_code != 200:
            raise PermanentBackendError(
                f"ComfyUI refused the upload of an input ({path} answered {response.status_code})"
            )
        try:
            answer = response.json()
            stored = {key: str(answer[key]) for key in ("name", "subfolder", "type")}
        except (ValueError, KeyError, TypeError) as exc:
            raise TransientBackendError(
                f"ComfyUI's answer to {path} is not the stored file's name"
            ) from exc
        return stored

    def queue(self) -> dict[str, list[Any]]:
        return self._json("GET", "/queue")

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished run's history entry, or None while ComfyUI doesn't have one."""
        return self._json("GET", f"/history/{prompt_id}").get(prompt_id)

    def cancel(self, prompt_id: str) -> None:
        """Remove ``prompt_id`` from the queue, and interrupt it if it is running (best effort).

        Bounded to a few seconds: it runs while the user waits to get their prompt back.
        """
        for path, body in (
            ("/queue", {"delete": [prompt_id]}),
            ("/interrupt", {"prompt_id": prompt_id}),
        ):
            try:
                self.http.post(path, json=body, timeout=_CANCEL_TIMEOUT_S)
            except httpx.TransportError:
                return  # the server is gone: there is nothing left to stop
            except httpx.HTTPError:
                continue

    def image(self, output: dict[str, Any]) -> GeneratedImage:
        """An output image from ``/view``, streamed when it is read, ComfyUI's chunks kept."""
        filename = str(output.get("filename", ""))
        mime_type = mimetypes.guess_type(filename)[0] or "image/png"
        return GeneratedImage.from_chunks(self._view(output), mime_type)

    def _view(self, output: dict[str, Any]) -> Iterator[bytes]:
        params = {
            "filename": output.get("filename", ""),
            "subfolder": output.get("subfolder", ""),
            "type": output.get("type", "output"),
        }
        try:
            with self.http.stream("GET", "/view", params=params) as response:
                if response.status_code != 200:
                    raise TransientBackendError(
                        f"ComfyUI answered /view of {params['filename']} with {response.status_code}"
                    )
                yield from response.iter_bytes(_CHUNK)
        except httpx.HTTPError as exc:
            raise TransientBackendError(
                f"downloading {params['filename']} from ComfyUI failed: {_reason(exc)}"
            ) from exc

    # -- rejections -----------------------------------------------------------------------

    def _rejection(self, detail: dict[str, Any], graph: dict[str, Any]) -> str:
        error = detail.get("error") or {}
        head = str(error.get("message") or "the workflow was rejected")
        if error.get("details"):
            head = f"{head.rstrip('.')} ({error['details']})"
        problems = self._node_problems(detail.get("node_errors"), graph)
        text = f"ComfyUI rejected the workflow: {head}"
        return f"{text}; " + "; ".join(problem for _, problem in problems) if problems else text

    def skipped_outputs(self, node_errors: Any, graph: dict[str, Any]) -> dict[str, str]:
        """The outputs ComfyUI left out of an accepted run, each with why: its failing nodes."""
        reasons: dict[str, list[str]] = {}
        for outputs, problem in self._node_problems(node_errors, graph):
            for output in outputs:
                reasons.setdefault(output, []).append(problem)
        return {output: "; ".join(problems) for output, problems in reasons.items()}

    def _node_problems(
        self, node_errors: Any, graph: dict[str, Any]
    ) -> list[tuple[list[str], str]]:
        """Each node error as (the outputs it keeps from running, "node N (Class): problem")."""
        found = []
        for node, entry in (node_errors if isinstance(node_errors, dict) else {}).items():
            if not isinstance(entry, dict):
                continue
            name = node_name(graph, str(node), entry.get("class_type"))
            outputs = [str(o) for o in entry.get("dependent_outputs") or [] if o is not None]
            for item in entry.get("errors") or []:
                if isinstance(item, dict):
                    problem = self._problem(item, graph.get(str(node), {}))
                    found.append((outputs, f"node {name}: {problem}"))
        return found

    def _problem(self, item: dict[str, Any], node: dict[str, Any]) -> str:
        extra = item.get("extra_info") or {}
        input_name = extra.get("input_name")
        if item.get("type") == "value_not_in_list" and input_name:
            allowed = choices(extra.get("input_config"))
            if allowed is None and node.get("class_type"):
                try:
                    spec = self.object_info(node["class_type"]).get("input", {})
                    config = {**spec.get("required", {}), **spec.get("optional", {})}.get(
                        input_name
                    )
                    allowed = choices(config)
                except (TransientBackendError, PermanentBackendError):
                    allowed = None
            received = extra.get("received_value", node.get("inputs", {}).get(input_name))
            listing = _listing(allowed) if allowed is not None else "(the server did not list them)"
            return f"{input_name}: {received!r} is not on the server; it has: {listing}"
        message = item.get("message") or item.get("type") or "invalid"
        details = item.get("details")
        where = f"{input_name}: " if input_name else ""
        return f"{where}{message}" + (f" ({details})" if details else "")


def _listing(choices: list[str], most: int = 25) -> str:
    if not choices:
        return "nothing"
    shown = ", ".join(choices[:most])
    return shown + (f", … ({len(choices) - most} more)" if len(choices) > most else "")


def node_name(graph: dict[str, Any], node: str, class_type: str | None = None) -> str:
    """``9 (SaveImage "Final")``: a node as the user knows it, by id, class and title."""
    entry = graph.get(node, {})
    kind = class_type or entry.get("class_type", "?")
    title = (entry.get("_meta") or {}).get("title")
    return f'{node} ({kind} "{title}")' if title and title != kind else f"{node} ({kind})"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
