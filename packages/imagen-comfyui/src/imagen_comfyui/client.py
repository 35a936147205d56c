"""ComfyUI's HTTP API through httpx, its failures translated into imagen's errors."""

from __future__ import annotations

import contextlib
import mimetypes
from collections.abc import Iterator
from typing import Any

import httpx

from imagen import (
    CredentialRejectedError,
    GeneratedImage,
    PermanentBackendError,
    TransientBackendError,
)
from imagen.retry import retry_after
from imagen_comfyui.settings import ComfyUISettings

__all__ = ["ComfyClient"]

_CHUNK = 1 << 16


def _choices(config: Any) -> list[str] | None:
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
        if status in (408, 429) or status >= 500:
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
        """Queue ``graph`` under ``prompt_id``; a rejection is a PermanentBackendError."""
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
        return response.json()

    def queue(self) -> dict[str, list[Any]]:
        return self._json("GET", "/queue")

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The finished run's history entry, or None while ComfyUI doesn't have one."""
        return self._json("GET", f"/history/{prompt_id}").get(prompt_id)

    def cancel(self, prompt_id: str) -> None:
        """Remove ``prompt_id`` from the queue, and interrupt it if it is running (best effort)."""
        for path, body in (
            ("/queue", {"delete": [prompt_id]}),
            ("/interrupt", {"prompt_id": prompt_id}),
        ):
            with contextlib.suppress(httpx.HTTPError):  # the server is gone: nothing to stop
                self.http.post(path, json=body)

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
        head = error.get("message") or "the workflow was rejected"
        if error.get("details"):
            head = f"{head}: {error['details']}"
        problems = []
        for node, entry in (detail.get("node_errors") or {}).items():
            name = _node_name(graph, str(node), entry.get("class_type"))
            for item in entry.get("errors", []):
                problems.append(f"node {name}: {self._problem(item, graph.get(str(node), {}))}")
        text = f"ComfyUI rejected the workflow: {head}"
        return f"{text}; " + "; ".join(problems) if problems else text

    def _problem(self, item: dict[str, Any], node: dict[str, Any]) -> str:
        extra = item.get("extra_info") or {}
        input_name = extra.get("input_name")
        if item.get("type") == "value_not_in_list" and input_name:
            choices = _choices(extra.get("input_config"))
            if choices is None and node.get("class_type"):
                try:
                    spec = self.object_info(node["class_type"]).get("input", {})
                    config = {**spec.get("required", {}), **spec.get("optional", {})}.get(
                        input_name
                    )
                    choices = _choices(config)
                except (TransientBackendError, PermanentBackendError):
                    choices = None
            received = extra.get("received_value", node.get("inputs", {}).get(input_name))
            listing = _listing(choices) if choices is not None else "(the server did not list them)"
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


def _node_name(graph: dict[str, Any], node: str, class_type: str | None) -> str:
    entry = graph.get(node, {})
    kind = class_type or entry.get("class_type", "?")
    title = (entry.get("_meta") or {}).get("title")
    return f'{node} ({kind} "{title}")' if title and title != kind else f"{node} ({kind})"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
