"""The ``replicate`` backend: create predictions with the SDK, follow them, stream outputs.

Facts from the SDK (``shared/protocols.md``) that shape this module:

- ``replicate.run()`` can return nothing without an error, so predictions are created
  (without ``Prefer: wait``) and followed here, with our own deadline.
- The SDK's ``Prediction`` model rejects the documented status ``aborted``, and its
  ``predictions.create`` sends the POST with no timeout at all (``timeout=None`` unless
  ``wait`` is set). So predictions are created and read as plain JSON through the SDK's own
  HTTP client (its base URL, token, user agent and transport), with our timeout.
- The SDK retries GETs up to 10 times on its own; that is switched off, so the shared
  policy (``imagen.retry``) is the only one and the two never multiply.
- ``FileOutput`` downloads send the API token to the file host; outputs are fetched here
  with a client that has no credentials.
- Input images go as the SDK's ``encode_json`` sends a file in ``input``: uploaded with
  ``files.create`` (``POST /v1/files``, multipart field ``content``: file name, the open
  file, its content type), the file's ``urls.get`` in its place; or, with
  ``file_encoding: base64`` (the SDK's ``file_encoding_strategy="base64"``), a ``data:``
  URL. ``files.create`` also sends with no timeout, so the same multipart form goes
  through the SDK's client here, with ours; httpx streams it from the file.
"""

from __future__ import annotations

import base64
import contextlib
import mimetypes
import re
import time
from typing import Any, ClassVar

try:
    import httpx
    import replicate
except ImportError as exc:  # pragma: no cover - only without the package's dependencies
    raise ImportError(f"{exc}; install them with: pip install imagen-replicate") from exc

from imagen import (
    Backend,
    BackendConfig,
    Cancelled,
    Context,
    CredentialRejectedError,
    GeneratedImage,
    ModelInfo,
    PermanentBackendError,
    Progress,
    Request,
    Result,
    RunLostError,
    TransientBackendError,
    run_blocking,
)
from imagen.inputs import InputImage, InputSupport
from imagen.retry import call_with_retry, is_transient_status, retry_after
from imagen_replicate.files import data_url, form, missing_input, recordable
from imagen_replicate.mapping import input_support, plan
from imagen_replicate.model_inputs import MODEL_INPUTS
from imagen_replicate.settings import read_settings

__all__ = ["ReplicateBackend"]

_STEP = re.compile(r"(\d+)/(\d+) \[")
_WAIT_HINT = re.compile(r"(\d+)\s*(?:s\b|sec|second)")
_LOG_TAIL = 1000
_CHUNK = 1 << 16


class ReplicateBackend(Backend):
    """Generates with a model on Replicate."""

    reproducible: ClassVar[bool] = False  # hosted models don't promise the same pixels

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self.settings = read_settings(config)
        self.timeout = httpx.Timeout(self.settings.http_timeout_s, connect=10.0)
        self.sdk = replicate.Client(
            api_token=self.settings.token, base_url=self.settings.base_url, timeout=self.timeout
        )
        # The SDK wraps every transport in a RetryTransport (10 attempts for GETs); ours is
        # the one policy, so the SDK's makes a single attempt.
        self.sdk._client._transport.max_attempts = 1  # type: ignore[attr-defined]
        self.files = httpx.Client(timeout=self.timeout, follow_redirects=True)  # no credentials

    def close(self) -> None:
        self.sdk._client.close()
        self.files.close()

    def probe(self) -> str:
        """The token is accepted, the model exists and has every input the mapping names.

        ``GET /v1/account``, the model and its version (whose schema lists the inputs): all
        free.
        """
        context = Context()  # no caller's deadline: the client's timeout bounds each call
        account = self._request("GET", "/v1/account", "reading the account", context)
        model = self._request(
            "GET", f"/v1/models/{self.settings.owner_name}", "looking the model up", context
        )
        version = model.get("latest_version")
        if self.settings.version:
            version = self._request(
                "GET",
                f"/v1/models/{self.settings.owner_name}/versions/{self.settings.version}",
                "looking the version up",
                context,
            )
        self._check_mapping(version)
        who = account.get("username") or "an account"
        runs = model.get("run_count")
        return (
            f"the token in {self.settings.token_env} is accepted (signed in as {who}); "
            f"{self.settings.model} is there" + (f" ({runs} runs)" if runs else "")
        )

    def _check_mapping(self, version: Any) -> None:
        """Every model input the mapping names is in the version's ``Input`` schema."""
        problem = missing_input(self.settings, version)
        if problem is not None:
            raise self.config.error(*problem)

    def models(self) -> list[ModelInfo]:
        """The model's versions, newest first; an official model has none: its latest is shown."""
        owner_name = self.settings.owner_name
        context = Context()
        try:
            path = f"/v1/models/{owner_name}/versions"
            page = self._request("GET", path, "listing versions", context)
        except PermanentBackendError as exc:
            if "official model" not in str(exc):
                raise
            path = f"/v1/models/{owner_name}"
            model = self._request("GET", path, "looking the model up", context)
            return [
                ModelInfo(
                    owner_name,
                    "model",
                    f"official model: no versions to choose; {model.get('description') or ''}".strip(),
                    current=True,
                )
            ]
        return [
            ModelInfo(
                f"{owner_name}:{version['id']}",
                "version",
                str(version.get("created_at") or ""),
                current=version.get("id") == self.settings.version,
            )
            for version in page.get("results") or []
            if isinstance(version, dict) and version.get("id")
        ]

    def options(self) -> dict[str, str] | None:
        """The model's inputs (sent as they are), when imagen knows the model; else any."""
        return MODEL_INPUTS.get(self.settings.owner_name)

    def input_support(self) -> InputSupport:
        """One file per role the mapping (the family's, or ``inputs:``) has an input for."""
        return input_support(self.settings.names)

    # -- the contract ---------------------------------------------------------------------

    def generate(self, request: Request, context: Context) -> Result:
        context.check()
        prepared = plan(request, self.settings.family, self.settings.overrides, self.settings.fixed)
        # Each file is sent once, before the first prediction, and named in every batch.
        files = {key: self._file(image, context) for key, image in prepared.files.items()}
        ids: list[str] = []
        seen: set[str] = set()  # progress kinds reported so far
        try:
            for batch in prepared.batches:
                batch.update(files)
                prediction = call_with_retry(
                    lambda batch=batch: self._create(batch, context),
                    what="creating the prediction",
                    context=context,
                    policy=self.settings.retry,
                    where_to_check="your predictions on Replicate's dashboard",
                )
                ids.append(prediction["id"])
                context.report_run_id(",".join(ids))  # one id per prediction, for resume
                self._report(prediction.get("status"), context, seen)
        except Cancelled:  # the predictions created so far would run (and bill) on
            if not context.detached:  # detached: another worker resumes them by their ids
                for prediction_id in ids:
                    self._cancel(prediction_id)
            raise
        return self._collect(ids, request, context, prepared.ignored, prepared.size_note, seen)

    def estimate_cost(self, request: Request) -> float | None:
        """Per-image prices times the count; per-second prices can't be known before the run."""
        price = self.settings.price
        if price is None or price.per_image is None:
            return None
        return round(price.per_image * request.count, 6)

    def resume(self, run_id: str, request: Request, context: Context) -> Result:
        prepared = plan(request, self.settings.family, self.settings.overrides, self.settings.fixed)
        return self._collect(
            run_id.split(","), request, context, prepared.ignored, prepared.size_note
        )

    # -- input images -----------------------------------------------------------------------

    def _file(self, image: InputImage, context: Context) -> str:
        """What the model input gets for ``image``: an uploaded file's URL, or a data URL."""
        if self.settings.file_encoding == "base64":
            return data_url(image)
        uploaded = call_with_retry(
            lambda: self._upload(image, context),
            what=f"uploading the {image.role} input",
            context=context,
            policy=self.settings.retry,
            safe_to_repeat=True,  # an upload runs nothing and costs nothing
        )
        url = (uploaded.get("urls") or {}).get("get")
        if not isinstance(url, str):
            raise PermanentBackendError(
                f"uploading the {image.role} input: Replicate sent no file URL"
            )
        return url

    def _upload(self, image: InputImage, context: Context) -> dict[str, Any]:
        with image.open() as handle:  # opened again for each attempt
            return self._request(
                "POST",
                "/v1/files",
                f"uploading the {image.role} input",
                context,
                files=form(image, handle),
            )

    # -- predictions ------------------------------------------------------------------------

    def _create(self, inputs: dict[str, Any], context: Context) -> dict[str, Any]:
        settings = self.settings
        if settings.version:
            path, body = "/v1/predictions", {"input": inputs, "version": settings.version}
        else:
            path, body = f"/v1/models/{settings.owner_name}/predictions", {"input": inputs}
        return self._request("POST", path, "creating the prediction", context, json=body)

    def _get(self, prediction_id: str, context: Context) -> dict[str, Any]:
        path = f"/v1/predictions/{prediction_id}"
        return self._request("GET", path, "reading the prediction", context, prediction_id)

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        context: Context | None = None,
        prediction_id: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        # No run id yet while creating: a create cut short by a cancellation may still
        # start a prediction, which the Cancelled message says. No context: a lookup
        # outside any run (probe, models).
        try:
            response = run_blocking(
                lambda: self.sdk._client.request(method, path, timeout=self.timeout, **kwargs),
                context or Context(),
                what=what,
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, what) from exc
        if response.status_code >= 400:
            raise self._status_error(response, prediction_id)
        try:
            return response.json()
        except ValueError as exc:
            raise TransientBackendError(
                f"{what}: Replicate sent a body that is not JSON",
                upstream_id=prediction_id,
                sent=True,
            ) from exc

    def _cancel(self, prediction_id: str) -> None:
        # Best effort: we are stopping anyway, and the SDK may not parse the answer.
        with contextlib.suppress(Exception):
            self.sdk.predictions.cancel(prediction_id)

    def _follow(
        self, prediction_id: str, context: Context, seen: set[str], label: str = ""
    ) -> dict[str, Any]:
        """Poll until the prediction ends; cancel it upstream if it times out."""
        deadline = time.monotonic() + self.settings.timeout_s
        last_status = None
        while True:
            prediction = call_with_retry(
                lambda: self._get(prediction_id, context),
                what="reading the prediction",
                context=context,
                policy=self.settings.retry,
                safe_to_repeat=True,
            )
            status = prediction.get("status")
            if status != last_status:
                last_status = status
                self._report(status, context, seen)
            step = _last_step(prediction.get("logs") or "")
            if status == "processing" and step is not None:
                context.progress(Progress("step", *step, message=label))
            if status == "succeeded":
                return prediction
            if status == "failed":
                raise PermanentBackendError(
                    f"prediction {prediction_id} failed: {prediction.get('error') or 'no reason given'}",
                    upstream_id=prediction_id,
                )
            if status == "canceled":
                raise PermanentBackendError(
                    f"prediction {prediction_id} was canceled on Replicate",
                    upstream_id=prediction_id,
                )
            if status == "aborted":
                raise TransientBackendError(  # it never ran, so nothing was billed
                    f"prediction {prediction_id} was aborted before it started (its deadline "
                    "passed)",
                    upstream_id=prediction_id,
                )
            if time.monotonic() >= deadline:
                self._cancel(prediction_id)
                raise TransientBackendError(
                    f"prediction {prediction_id} was still {status} after "
                    f"{self.settings.timeout_s:g} s (timeout_s); canceled",
                    upstream_id=prediction_id,
                )
            context.wait(self.settings.poll_interval_s)

    def _report(self, status: str | None, context: Context, seen: set[str]) -> None:
        """Report a status change once per run, however many predictions make it up."""
        kind = {"starting": "queued", "processing": "started"}.get(status or "")
        if kind is None or kind in seen or (kind == "queued" and "started" in seen):
            return
        seen.add(kind)
        context.progress(Progress(kind))  # type: ignore[arg-type]

    # -- outputs ----------------------------------------------------------------------------

    def _collect(
        self,
        ids: list[str],
        request: Request,
        context: Context,
        ignored: list[str],
        size_note: str | None,
        seen: set[str] | None = None,
    ) -> Result:
        seen = set() if seen is None else seen  # progress kinds reported so far
        try:
            predictions = [
                # Each prediction counts its own steps: label them so they never seem to go back.
                self._follow(
                    prediction_id,
                    context,
                    seen,
                    f"prediction {number}/{len(ids)}" if len(ids) > 1 else "",
                )
                for number, prediction_id in enumerate(ids, start=1)
            ]
        except Cancelled:  # while polling or waiting: stop every prediction of the run
            if not context.detached:  # detached: another worker resumes these predictions
                for prediction_id in ids:
                    self._cancel(prediction_id)
            raise
        context.progress(Progress("downloading"))
        images = []
        for prediction in predictions:
            outputs = prediction.get("output")
            urls = outputs if isinstance(outputs, list) else [outputs]
            if not outputs or not all(isinstance(url, str) for url in urls):
                raise PermanentBackendError(
                    f"prediction {prediction['id']} succeeded without an image output",
                    upstream_id=prediction["id"],
                )
            images += [self._image(url) for url in urls]
        context.progress(Progress("finished"))
        return Result(images, self._metadata(predictions, len(images), ignored, size_note))

    def _image(self, url: str) -> GeneratedImage:
        if url.startswith("data:"):
            header, _, payload = url.partition(",")
            mime_type = header[5:].split(";")[0] or "image/png"
            return GeneratedImage.from_bytes(base64.b64decode(payload), mime_type)
        mime_type = mimetypes.guess_type(url.split("?")[0])[0] or "image/png"
        return GeneratedImage.from_chunks(self._download(url), mime_type)

    def _download(self, url: str) -> Any:
        try:
            with self.files.stream("GET", url) as response:
                if response.status_code != 200:
                    raise TransientBackendError(
                        f"downloading {url} answered {response.status_code}"
                    )
                yield from response.iter_bytes(_CHUNK)
        except httpx.HTTPError as exc:
            raise TransientBackendError(f"downloading {url} failed: {type(exc).__name__}") from exc

    def _metadata(
        self,
        predictions: list[dict[str, Any]],
        images: int,
        ignored: list[str],
        size_note: str | None,
    ) -> dict[str, Any]:
        predict_time = (
            sum((p.get("metrics") or {}).get("predict_time") or 0.0 for p in predictions)
            if all((p.get("metrics") or {}).get("predict_time") is not None for p in predictions)
            else None
        )
        first = predictions[0]
        metadata: dict[str, Any] = {
            "prediction_id": ",".join(p["id"] for p in predictions),
            "upstream_id": ",".join(p["id"] for p in predictions),
            "model": first.get("model") or self.settings.owner_name,
            "version": first.get("version"),
            "predict_time_s": predict_time,
            "logs": (first.get("logs") or "")[-_LOG_TAIL:],
            "family": self.settings.family.name,
            "input": recordable(first.get("input")),
        }
        if self.settings.price is not None:
            cost = self.settings.price.cost(images, predict_time)
            if cost is not None:
                metadata["cost_usd"] = cost
        if size_note:
            metadata["size"] = size_note
        if ignored:
            metadata["ignored"] = ignored
        return {key: value for key, value in metadata.items() if value is not None}

    # -- errors ----------------------------------------------------------------------------

    def _status_error(self, response: httpx.Response, prediction_id: str | None) -> Exception:
        try:
            body = response.json()
            detail = body.get("detail") or body.get("title") or response.reason_phrase
        except ValueError:
            detail = response.reason_phrase
        status = response.status_code
        if is_transient_status(status):
            # Replicate's 429 names its wait in the text ("available in 1 second") when no
            # Retry-After header says it.
            wait = retry_after(response.headers)
            hint = _WAIT_HINT.search(str(detail)) if status == 429 else None
            if wait is None and hint is not None:
                wait = float(hint.group(1))
            return TransientBackendError(
                f"Replicate answered {status}: {detail}",
                upstream_id=prediction_id,
                retry_after=wait,
            )
        if status in (401, 403):
            return CredentialRejectedError(
                f"Replicate refused the token in {self.settings.token_env} ({status}): {detail}"
            )
        if status == 404 and prediction_id is not None:
            return RunLostError(
                f"prediction {prediction_id} is unknown to Replicate", upstream_id=prediction_id
            )
        if status == 404:
            return PermanentBackendError(f"Replicate has no model {self.settings.model}: {detail}")
        return PermanentBackendError(
            f"Replicate rejected the input ({status}): {detail}", upstream_id=prediction_id
        )

    def _transport_error(self, exc: httpx.HTTPError, what: str) -> TransientBackendError:
        base = self.settings.base_url or "https://api.replicate.com"
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return TransientBackendError(f"cannot reach Replicate at {base}: {type(exc).__name__}")
        # The request was sent: it may have been processed.
        return TransientBackendError(f"{what} failed: {type(exc).__name__} from {base}", sent=True)


def _last_step(logs: str) -> tuple[int, int] | None:
    """The last ``n/total [`` progress-bar step in the model's logs, if any."""
    found = _STEP.findall(logs)
    if not found:
        return None
    current, total = (int(part) for part in found[-1])
    return (current, total) if 0 <= current <= total else None
