"""Checks of what ``generate`` hands back: images, sizes, seeds, metadata, progress."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from imagen.backend import Backend
from imagen.context import PROGRESS_KINDS, Progress
from imagen.request import IGNORED_KEY, REQUEST_FIELDS, Request
from imagen.testing.base import ConformanceBase
from imagen.testing.leaks import SecretProbe
from imagen.testing.recording import RecordingContext

__all__ = ["OutputChecks"]

_OPTIONAL_FIELDS = ("negative_prompt", "steps", "seed", "width", "height")
PROBE_OPTION = "imagen_conformance_probe"


def _not_json(value: Any, path: str) -> str | None:
    """Where ``value`` stops being plain JSON (dict, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, bool | int | str):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value}"
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _not_json(item, f"{path}[{index}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has the key {key!r}, a {type(key).__name__}, not a string"
            found = _not_json(item, f"{path}[{key!r}]")
            if found:
                return found
        return None
    return f"{path} is a {type(value).__name__}"


class OutputChecks(ConformanceBase):
    """Images that are what they claim, as asked; metadata a sidecar can hold."""

    def test_images_match_their_mime_type_and_decode(
        self, backend: Backend, base_request: Request
    ) -> None:
        self._images(backend.generate(base_request, RecordingContext()), 1)

    def test_images_have_the_requested_size(
        self, backend: Backend, base_request: Request, other_size_request: Request
    ) -> None:
        for request in (base_request, other_size_request):
            expected = self.expected_size(request)
            result = backend.generate(request, RecordingContext())
            ignored = self._ignored(result)
            for number, image in enumerate(self._images(result, request.count), start=1):
                if expected is None:
                    continue
                width, height = expected
                if "width" in ignored:
                    width = image.width
                if "height" in ignored:
                    height = image.height
                if (image.width, image.height) != (width, height):
                    pytest.fail(
                        f"asked for {request.width}x{request.height}, image {number} is "
                        f"{image.width}x{image.height}: send width and height upstream (or "
                        "list them under 'ignored' when it can't take them; override "
                        "expected_size() when it rounds them)"
                    )

    def test_count_gives_that_many_images(self, backend: Backend, base_request: Request) -> None:
        images = self._images(
            backend.generate(base_request.replace(count=3), RecordingContext()), 3
        )
        assert len(images) == 3

    def test_seed_is_honoured_or_listed_as_ignored(
        self, backend: Backend, base_request: Request, upstream: Any
    ) -> None:
        first = backend.generate(base_request, RecordingContext())
        ignored = self._ignored(first)
        pixels = self._images(first, 1)
        if "seed" in ignored:
            return
        if backend.reproducible:
            again = self._images(backend.generate(base_request, RecordingContext()), 1)
            assert again == pixels, "reproducible backend: the same seed gave different pixels"
            other = base_request.replace(seed=(base_request.seed or 0) + 1)
            assert self._images(backend.generate(other, RecordingContext()), 1) != pixels, (
                "another seed gave the same image"
            )
            return
        seen = self.seen_seed(upstream)
        assert seen == base_request.seed, (
            f"the upstream received seed {seen!r}, not {base_request.seed}; honour it, list "
            "'seed' under 'ignored', or override seen_seed() to report what the stand-in got"
        )

    def test_each_image_seed_makes_that_image(
        self, backend: Backend, base_request: Request
    ) -> None:
        batch = backend.generate(base_request.replace(count=3), RecordingContext())
        seeds = [image.seed for image in batch.images]
        images = self._images(batch, 3)
        for number, (seed, image) in enumerate(zip(seeds, images, strict=True), start=1):
            if seed is None:
                continue  # no claim made: imagen records the batch's seed and position
            alone = backend.generate(base_request.replace(seed=seed), RecordingContext())
            if self._images(alone, 1)[0] != image:
                pytest.fail(
                    f"image {number} of a batch says seed {seed}, but one image made with seed "
                    f"{seed} differs, so `imagen generate --from` remakes another picture: set "
                    "GeneratedImage.seed only to the seed that makes that very image alone "
                    "(or leave it None)"
                )

    def test_ignored_fields_are_listed(
        self, backend: Backend, base_request: Request, upstream: Any
    ) -> None:
        request = base_request.replace(
            negative_prompt=base_request.negative_prompt or "blurry, low quality",
            steps=base_request.steps or 8,
            options={**base_request.options, PROBE_OPTION: 1},
        )
        result = backend.generate(request, RecordingContext())
        self._images(result, 1)
        ignored = result.metadata.get(IGNORED_KEY, [])
        assert isinstance(ignored, list), "metadata['ignored'] must be a list of field names"
        allowed = set(REQUEST_FIELDS) | {f"options.{key}" for key in request.options}
        for name in ignored:
            assert name in allowed, f"{name!r} in 'ignored' is no field of the request"
        if self.passes_options_through:
            sent = [e.body for e in self.traffic(upstream).submissions]
            assert sent, "no submission reached the stand-in"
            assert PROBE_OPTION.encode() in sent[-1], (
                f"passes_options_through is set, but --opt {PROBE_OPTION}=1 did not reach "
                "the upstream's submission"
            )
        else:
            assert f"options.{PROBE_OPTION}" in ignored, (
                f"the unknown option {PROBE_OPTION!r} (--opt {PROBE_OPTION}=1) is not listed "
                f"as 'options.{PROBE_OPTION}' under 'ignored': a user's misspelt --opt would "
                "be dropped without a word"
            )
        fields = {
            name for name in self.ignores if name in _OPTIONAL_FIELDS and getattr(request, name)
        }
        assert fields <= set(ignored), (
            f"these fields are ignored but not listed: {fields - set(ignored)}"
        )
        assert not set(ignored) & (set(_OPTIONAL_FIELDS) - self.ignores), (
            "the backend lists fields as ignored that the test class does not declare in `ignores`"
        )

    def test_metadata_is_json_ready(self, backend: Backend, base_request: Request) -> None:
        result = backend.generate(base_request.replace(count=2), RecordingContext())
        places: list[tuple[str, Any]] = [("metadata", result.metadata)]
        places += [(f"image {n}'s metadata", i.metadata) for n, i in enumerate(result.images, 1)]
        self._images(result, 2)
        for where, metadata in places:
            if not isinstance(metadata, dict):
                pytest.fail(f"{where} is a {type(metadata).__name__}, not a dict")
            found = _not_json(metadata, where)
            if found:
                pytest.fail(
                    f"{found}: metadata goes into a JSON sidecar as it is, so `imagen generate` "
                    "would fail after the upstream call and save nothing; use dicts with string "
                    "keys, lists, strings, numbers, booleans and None"
                )
            json.dumps(metadata, allow_nan=False)

    def test_progress_is_well_formed_and_ordered(
        self, backend: Backend, base_request: Request
    ) -> None:
        context = RecordingContext()
        self._images(backend.generate(base_request, context), 1)
        events = context.events
        assert events, "no progress reported: report at least 'started' and 'finished'"
        for event in events:
            assert isinstance(event, Progress), f"progress must be a Progress, not {event!r}"
            assert event.kind in PROGRESS_KINDS
        kinds = [event.kind for event in events]
        if "started" in kinds:
            assert "queued" not in kinds[kinds.index("started") :], "'queued' came after 'started'"
        if "finished" in kinds:
            assert kinds.index("finished") == len(kinds) - 1, "progress came after 'finished'"
        last: dict[tuple[int | None, str], int] = {}
        for event in events:
            if event.kind == "step" and event.current is not None:
                key = (event.total, event.message)
                assert event.current >= last.get(key, 0), f"steps went backwards: {event}"
                last[key] = event.current

    def test_no_secret_reaches_metadata_or_errors(
        self, backend: Backend, base_request: Request, secret_probe: SecretProbe
    ) -> None:
        context = RecordingContext()
        with self._logs() as logged:
            result = backend.generate(base_request, context)
        self._images(result, 1)
        self._no_leak(
            secret_probe,
            {
                "the metadata": json.dumps(result.metadata, default=repr),
                "an image's metadata": [
                    json.dumps(i.metadata, default=repr) for i in result.images
                ],
                "a progress message": [event.message for event in context.events],
                "a run id": context.run_ids,
                "a log line": logged,
            },
        )
