"""The ``openai`` backend: ``images.generate``, and ``images.edit`` for input images.

- The SDK retries POSTs twice by default: its ``max_retries`` is 0 here, so imagen's shared
  policy is the only one. A generation is paid: one that may have reached OpenAI (a timeout
  after sending) is never repeated; it fails saying it may have been billed.
- The call blocks until the images exist (minutes at high quality). It goes through
  :func:`imagen.run_blocking`, which hands back the answer the moment it arrives and
  stops waiting at once on cancellation; OpenAI has no way to stop a generation, so a
  cancelled one may still be billed (the message says so). No run id: the request is the
  run, and nothing can re-attach to it.
- Images arrive as base64 in the JSON; each is decoded a slice at a time while imagen
  writes it, so it is never held twice.
- A request with input images is an edit (:mod:`imagen_openai.edits`): checked before
  anything is sent, its files streamed from disk by the SDK, never read whole here.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import typing
from typing import Any, ClassVar

try:
    import openai
    from openai.types import ImageModel
except ImportError as exc:  # pragma: no cover - only without the package's dependencies
    raise ImportError(f"{exc}; install it with: pip install imagen-openai") from exc

from imagen import (
    Backend,
    BackendConfig,
    Context,
    CredentialRejectedError,
    GeneratedImage,
    ModelInfo,
    PermanentBackendError,
    Progress,
    Request,
    Result,
    TransientBackendError,
    run_blocking,
)
from imagen.inputs import InputSupport
from imagen.retry import call_with_retry, is_transient_status, retry_after
from imagen_openai import edits
from imagen_openai.models import (
    MAX_IMAGES,
    RETIRED,
    cost_from_table,
    cost_from_usage,
    size_for,
)
from imagen_openai.settings import CHOICES, SLICE, read_settings

__all__ = ["OpenAIBackend"]

_MIME = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}
_OPTIONS = (*CHOICES, "output_compression")  # sent to generations and edits alike
_EDIT_OPTIONS = {
    "input_fidelity": "how closely an edit keeps its input images' features (faces): high "
    "or low (gpt-image-1.5; gpt-image-1-mini takes low only; not gpt-image-2)",
}
_EDIT_TAKES = (*(key for key in _OPTIONS if key != "moderation"), *_EDIT_OPTIONS)
_B64_SLICE = 4 * 16384  # base64 characters decoded at a time (a multiple of 4)


class _Base64Reader(io.RawIOBase):
    """A binary stream over base64 text, decoded slice by slice as it is read."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._position = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and self._position < len(self._text):
            chunk = self._text[self._position : self._position + _B64_SLICE]
            self._position += len(chunk)
            try:
                self._pending = base64.b64decode(chunk, validate=True)
            except binascii.Error as exc:
                raise TransientBackendError(
                    f"OpenAI sent an image that is not base64: {exc}"
                ) from exc
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def close(self) -> None:
        self._text = ""
        super().close()


class OpenAIBackend(Backend):
    """Generates with OpenAI's gpt-image models."""

    reproducible: ClassVar[bool] = False  # the Images API takes no seed

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.settings = read_settings(config, typing.get_args(ImageModel))
        self.client = openai.OpenAI(
            api_key=self.settings.api_key,
            base_url=self.settings.base_url,
            organization=self.settings.organization,
            project=self.settings.project,
            timeout=self.settings.timeout_s,
            max_retries=0,  # imagen's policy retries; the SDK's would multiply it
        )

    def close(self) -> None:
        self.client.close()

    def _listed(self) -> list[str]:
        """The models the key may use (``GET /v1/models``: free, and it proves the key)."""
        try:
            page = self.client.with_options(timeout=30.0).models.list()
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from exc
        except openai.APIConnectionError as exc:
            raise TransientBackendError(
                f"cannot reach OpenAI at {self.client.base_url}: {exc}"
            ) from exc
        return sorted(model.id for model in page)

    def probe(self) -> str:
        """The key is accepted (listing models costs nothing), and the model is listed."""
        listed = self._listed()
        model = self.settings.model
        if model not in listed:
            raise PermanentBackendError(
                f"the key is accepted, but {model!r} is not among the models it may use "
                f"({len(listed)} listed)"
            )
        return f"the key in {self.settings.api_key_env} is accepted; {model} is listed"

    def models(self) -> list[ModelInfo]:
        """The image models the key may use; a compatible server's every model if it has none.

        OpenAI lists its text, audio and embedding models too: only the image ones are
        shown. A compatible server (``base_url``) with names of its own shows them all.
        """
        listed = self._listed()
        images = [m for m in listed if m.startswith(("gpt-image", "chatgpt-image", "dall-e"))]
        listed = images or listed
        return [
            ModelInfo(name, "model", RETIRED.get(name, ""), current=name == self.settings.model)
            for name in listed
        ]

    def options(self) -> dict[str, str]:
        """The Images API parameters a request may set (``--opt quality=low``)."""
        return {**{key: SLICE[key].doc for key in _OPTIONS}, **_EDIT_OPTIONS}

    def input_support(self) -> InputSupport:
        """Edits: up to 16 images (images and references together) and a mask; no strength."""
        return edits.input_support(self.settings.model)

    def check(self, request: Request) -> None:
        """An edit's inputs and ``input_fidelity``, as the edits endpoint would judge them."""
        if request.inputs:
            edits.check_edit(self.settings.model, request)

    def _params(self, request: Request) -> dict[str, Any]:
        params = dict(self.settings.defaults)
        params.update({key: request.options[key] for key in _OPTIONS if key in request.options})
        size = size_for(self.settings.model, request.width, request.height)
        if size:
            params["size"] = size
        return params

    def estimate_cost(self, request: Request) -> float | None:
        """The per-image table's price; ``auto`` quality is priced as ``high``, the dearest.

        An edit is estimated at its outputs' price alone: its input images are billed as
        tokens on top, which no table can price before OpenAI counts them (an estimate that
        leaves them out still holds spending caps, which no estimate at all would not).
        """
        params = self._params(request)
        quality = params.get("quality")
        quality = "high" if quality in (None, "auto") else quality
        size = params.get("size") or "1024x1024"
        return cost_from_table(self.settings.model, quality, size, request.count)

    def generate(self, request: Request, context: Context) -> Result:
        context.check()
        settings = self.settings
        params = self._params(request)
        if request.inputs:
            edits.check_edit(settings.model, request)  # again: the request may be a job's
            params.pop("moderation", None)  # the edits endpoint has none
            if "input_fidelity" in request.options:
                params["input_fidelity"] = request.options["input_fidelity"]
        what = "editing the images" if request.inputs else "generating the images"
        images: list[GeneratedImage] = []
        usages: list[dict[str, Any]] = []
        context.progress(Progress("started"))
        remaining = request.count
        while remaining:
            n = min(MAX_IMAGES, remaining)
            response = call_with_retry(
                lambda n=n: run_blocking(
                    lambda: self._call(request, n, params),
                    context,
                    timeout_s=settings.timeout_s,
                    what=what,
                ),
                what=what,
                context=context,
                policy=settings.retry,
                where_to_check="the usage page of your OpenAI project",
            )
            fmt = response.get("output_format") or params.get("output_format") or "png"
            for item in response.get("data") or []:
                if not item.get("b64_json"):
                    raise PermanentBackendError("OpenAI answered without image data")
                stream = io.BufferedReader(_Base64Reader(item["b64_json"]))
                extra = (
                    {"revised_prompt": item["revised_prompt"]} if item.get("revised_prompt") else {}
                )
                images.append(GeneratedImage(stream, _MIME.get(fmt, "image/png"), metadata=extra))  # type: ignore[arg-type]
            usages.append(response.get("usage") or {})
            remaining -= n
        context.progress(Progress("finished"))
        return Result(images, self._metadata(request, params, response, usages, len(images)))

    # -- the call --------------------------------------------------------------------------

    def _call(self, request: Request, n: int, params: dict[str, Any]) -> dict[str, Any]:
        """One ``images.generate``, or ``images.edit`` when the request has inputs."""
        if not request.inputs:
            return self._send(
                self.client.images.with_raw_response.generate,
                model=self.settings.model,
                prompt=request.prompt,
                n=n,
                **params,
            )
        # Opened for each attempt (a retry sends them again from the start), closed after.
        with edits.edit_files(request) as (images, mask):
            extra = {"mask": mask} if mask is not None else {}
            return self._send(
                self.client.images.with_raw_response.edit,
                model=self.settings.model,
                prompt=request.prompt,
                image=images,
                n=n,
                **extra,
                **params,
            )

    def _send(self, call: Any, **arguments: Any) -> dict[str, Any]:
        try:
            raw = call(**arguments)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from exc
        except openai.APITimeoutError as exc:
            raise TransientBackendError("OpenAI did not answer in time", sent=True) from exc
        except openai.APIConnectionError as exc:
            sent = "Connect" not in type(exc.__cause__).__name__
            raise TransientBackendError(
                f"cannot reach OpenAI at {self.client.base_url}: {exc}", sent=sent
            ) from exc
        try:
            return json.loads(raw.content)
        except ValueError as exc:
            raise TransientBackendError(
                f"OpenAI answered {raw.status_code} with a body that is not JSON", sent=True
            ) from exc

    def _status_error(self, exc: openai.APIStatusError) -> Exception:
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or str(exc)
        code = body.get("code") or getattr(exc, "code", None)
        if code in ("moderation_blocked", "content_policy_violation"):
            return PermanentBackendError(f"OpenAI's safety system rejected the request: {message}")
        if status == 401:
            return CredentialRejectedError(
                f"OpenAI refused the key in {self.settings.api_key_env} (401): {message}"
            )
        if is_transient_status(status):
            return TransientBackendError(
                f"OpenAI answered {status}: {message}",
                retry_after=retry_after(exc.response.headers),
            )
        return PermanentBackendError(f"OpenAI answered {status}: {message}")

    # -- metadata ----------------------------------------------------------------------------

    def _metadata(
        self,
        request: Request,
        params: dict[str, Any],
        last: dict[str, Any],
        usages: list[dict[str, Any]],
        images: int,
    ) -> dict[str, Any]:
        settings = self.settings
        ignored = [name for name in ("negative_prompt", "steps", "seed") if getattr(request, name)]
        taken = _EDIT_TAKES if request.inputs else _OPTIONS
        ignored += [f"options.{key}" for key in request.options if key not in taken]
        quality = last.get("quality") or params.get("quality")
        size = last.get("size") or params.get("size")
        costs = [cost_from_usage(settings.model, usage) for usage in usages]
        cost: float | None
        cost_note = None
        if settings.price_per_image is not None:
            cost = round(settings.price_per_image * images, 6)
        elif request.inputs and not all(usage.get("input_tokens_details") for usage in usages):
            # An edit's input images are billed as input tokens: without their count no
            # price is known, and the per-image table would understate it.
            cost = None
            cost_note = "OpenAI reported no input image tokens for this edit: cost unknown"
        elif all(value is not None for value in costs):
            cost = round(sum(costs), 6)  # type: ignore[arg-type]
        elif request.inputs:
            cost = None
            cost_note = (
                f"no token prices are known for {settings.model}: an edit's cost is unknown "
                "(set price_per_image to record one)"
            )
        else:
            cost = cost_from_table(settings.model, quality, size, images)
        metadata: dict[str, Any] = {
            "model": settings.model,
            "size": size,
            "quality": quality,
            "background": last.get("background") or params.get("background"),
            "output_format": last.get("output_format") or params.get("output_format"),
            "usage": usages[0] if len(usages) == 1 else usages,
            "cost_usd": cost,
            "cost_note": cost_note,
            "input_fidelity": params.get("input_fidelity"),
            "seed_note": "the Images API takes no seed: the same request gives different pixels",
        }
        if ignored:
            metadata["ignored"] = ignored
        return {key: value for key, value in metadata.items() if value not in (None, {}, [])}
