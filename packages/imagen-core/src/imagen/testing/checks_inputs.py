"""Checks of input images (edits, image-to-image, masks), for backends that declare them.

They run only when ``backend.input_support().any``; a backend that takes no input image
has them skipped, saying so (imagen refuses its inputs before calling it). Whether an
input *arrived* is read from the upstream's side: the SHA-256 of each input file the
stand-in received (:meth:`InputChecks.received_inputs`). A backend with no upstream must
show it in its pixels instead: another input, another image.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from imagen.backend import Backend
from imagen.errors import RequestError
from imagen.inputs import MAX_INPUTS, InputImage, InputRole, InputSupport
from imagen.request import Request, Result
from imagen.testing.base import ConformanceBase
from imagen.testing.images import Decoded
from imagen.testing.input_files import MeteredInput, make_input
from imagen.testing.recording import RecordingContext

__all__ = ["InputChecks"]

PROBE_STRENGTH = 0.37
"""The strength the strength check sends: a value no default has, to find upstream."""
LARGE_INPUT_BYTES = 20 * 1024 * 1024
"""The size of the input file the streaming check sends."""
_WHOLE_READ = 8 * 1024 * 1024  # one read() this large means the file was held whole
_READ_SLACK = 1024 * 1024  # headers read twice (a sniff, a decoder's seek back)


class InputChecks(ConformanceBase):
    """The conformance checks of input images, part of :class:`BackendConformance`.

    They run only for a backend whose ``input_support().any`` is true, and send small
    seeded-noise PNGs of ``base_request``'s size, and one padded to 20 MB. To see that an
    input arrived, the suite needs the upstream's side: by default it finds each input
    file's bytes (raw or base64) in the bodies your stand-in's ``traffic`` recorded. A
    stand-in that receives inputs some other way calls ``traffic.record_input(data)`` with
    each file's bytes where it takes them (an upload route), or the test class overrides
    :meth:`received_inputs`. With ``input_support().strength``, the stand-in must show the
    strength it got (:meth:`seen_strength`). A backend with no upstream (``has_upstream =
    False``) shows its inputs in its pixels instead: another input, another image.

    Set the class attribute ``reads_inputs_whole = True`` only for an upstream that takes
    input images inline alone (a base64 data URL in JSON): the large-input check then
    allows one whole read of the file.
    """

    reads_inputs_whole: ClassVar[bool] = False
    """The upstream takes input images only inline (a base64 data URL in a JSON body), so
    the backend reads each file whole once to send it. Leave False when it can stream the
    file (a multipart upload): the large-input check then fails any single read of more
    than 8 MB."""

    # -- hooks the author may override ------------------------------------------------------

    def received_inputs(self, upstream: Any, inputs: Sequence[InputImage]) -> set[str]:
        """The SHA-256s, among those of ``inputs``, that reached the upstream so far.

        By default: those the stand-in recorded (:meth:`Traffic.record_input`), and those
        whose file shows in a request body as it is or base64-encoded (a multipart upload,
        a data URL). Override it for a stand-in that sees inputs another way.
        """
        traffic = self.traffic(upstream)
        wanted = {item.sha256: item for item in inputs}
        found = set(traffic.inputs) & set(wanted)
        bodies = [exchange.body for exchange in traffic.requests if exchange.body]
        for digest, item in wanted.items():
            if digest in found:
                continue
            data = item.path.read_bytes()
            encoded = base64.b64encode(data)
            if any(data in body or encoded in body for body in bodies):
                found.add(digest)
        return found

    def seen_strength(self, upstream: Any) -> float | None:
        """The strength the stand-in last received, or None when it received none.

        By default: :data:`PROBE_STRENGTH` when its text (``0.37``) is in the latest
        submission's body (``"denoise": 0.37``, ``prompt_strength=0.37``). Override it for
        an upstream that takes strength in another form (a percentage, steps to skip).
        """
        submissions = self.traffic(upstream).submissions
        if submissions and str(PROBE_STRENGTH).encode() in submissions[-1].body:
            return PROBE_STRENGTH
        return None

    # -- helpers -------------------------------------------------------------------------------

    def _support(self, backend: Backend) -> InputSupport:
        support = backend.input_support()
        if not isinstance(support, InputSupport):
            pytest.fail(f"input_support() returned {support!r}, not an imagen.InputSupport")
        if not support.any:
            pytest.skip("the backend takes no input images (input_support()): nothing to check")
        return support

    @staticmethod
    def _first_role(support: InputSupport) -> InputRole:
        return "image" if support.images else "reference"

    @staticmethod
    def _size(request: Request) -> tuple[int, int]:
        return request.width or 64, request.height or 64

    def _run(self, backend: Backend, request: Request) -> tuple[Result, list[Decoded]]:
        result = backend.generate(request, RecordingContext())
        return result, self._images(result, request.count)

    def _arrived(
        self, upstream: Any, inputs: Sequence[InputImage], before: set[str], what: str
    ) -> None:
        received = self.received_inputs(upstream, inputs) - before
        missing = [item for item in inputs if item.sha256 not in received]
        if missing:
            names = ", ".join(f"{item.role} {item.name}" for item in missing)
            pytest.fail(
                f"{what}: the upstream never received {names} (by SHA-256): send each input "
                "file upstream as it is, streamed from InputImage.open(); if your stand-in "
                "receives it in another form, record it there with traffic.record_input(bytes) "
                "or override received_inputs()"
            )

    def _no_traffic(self, upstream: Any, before: int, what: str) -> None:
        if not self.has_upstream or upstream is None:
            return
        sent = len(self.traffic(upstream).requests) - before
        if sent:
            pytest.fail(
                f"{what}, yet {sent} request(s) reached the upstream: refuse it before any "
                "call (declare what you accept in input_support(); check() makes no call)"
            )

    def _requests_so_far(self, upstream: Any) -> int:
        if not self.has_upstream or upstream is None:
            return 0
        return len(self.traffic(upstream).requests)

    def _seen_before(self, upstream: Any, inputs: Sequence[InputImage]) -> set[str]:
        if not self.has_upstream or upstream is None:
            return set()
        return self.received_inputs(upstream, inputs)

    # -- the checks ---------------------------------------------------------------------------

    def test_an_input_image_arrives(
        self, backend: Backend, base_request: Request, upstream: Any, tmp_path: Path
    ) -> None:
        support = self._support(backend)
        role = self._first_role(support)
        size = self._size(base_request)
        first = make_input(tmp_path, role, size, seed=1)
        if self.has_upstream:
            self._need_upstream(upstream)
            before = self._seen_before(upstream, [first])
            self._run(backend, base_request.replace(inputs=(first,)))
            self._arrived(upstream, [first], before, f"one {role} input")
            return
        other = make_input(tmp_path, role, size, seed=2)
        _, with_first = self._run(backend, base_request.replace(inputs=(first,)))
        _, with_other = self._run(backend, base_request.replace(inputs=(other,)))
        if with_first == with_other:
            pytest.fail(
                f"two different {role} inputs gave the same image: the input never reached "
                "the picture (read it with InputImage.open())"
            )

    def test_the_declared_inputs_are_all_accepted(
        self, backend: Backend, base_request: Request, upstream: Any, tmp_path: Path
    ) -> None:
        support = self._support(backend)
        size = self._size(base_request)
        mask = support.mask and support.images > 0
        images = min(support.images, MAX_INPUTS - int(mask))  # a request holds 16 in all
        references = max(0, min(support.references, MAX_INPUTS - images - int(mask)))
        inputs: list[InputImage] = [
            make_input(tmp_path, "image", size, seed=10 + n) for n in range(images)
        ]
        inputs += [make_input(tmp_path, "reference", size, seed=40 + n) for n in range(references)]
        if mask:
            inputs.append(make_input(tmp_path, "mask", size, seed=70, mode="L"))
        declared = f"input_support() says {support}"
        before = self._seen_before(upstream, inputs)
        try:
            self._run(backend, base_request.replace(inputs=tuple(inputs)))
        except Exception as exc:  # noqa: BLE001 (any failure is the finding)
            pytest.fail(
                f"{declared}, but a request with that many inputs failed: "
                f"{type(exc).__name__}: {exc}; declare only what the upstream takes"
            )
        if self.has_upstream:
            self._need_upstream(upstream)
            sent = [item for item in inputs if item.role != "mask"]  # a mask may be converted
            self._arrived(upstream, sent, before, declared)

    def test_more_inputs_than_declared_are_refused_before_any_call(
        self, backend: Backend, base_request: Request, upstream: Any, tmp_path: Path
    ) -> None:
        from imagen.pipeline import check_request

        support = self._support(backend)
        size = self._size(base_request)
        cases: list[tuple[str, list[InputImage]]] = []
        if support.images < MAX_INPUTS:
            extra = [
                make_input(tmp_path, "image", size, seed=100 + n) for n in range(support.images + 1)
            ]
            cases.append((f"{support.images + 1} images", extra))
        if support.references < MAX_INPUTS:
            refs = [
                make_input(tmp_path, "reference", size, seed=200 + n)
                for n in range(support.references + 1)
            ]
            cases.append((f"{support.references + 1} references", refs))
        if not support.mask:
            mask = make_input(tmp_path, "mask", size, seed=300, mode="L")
            cases.append(("a mask", [make_input(tmp_path, "image", size, seed=301), mask]))
        for what, inputs in cases:
            before = self._requests_so_far(upstream)
            try:
                request = base_request.replace(inputs=tuple(inputs))
                check_request(backend, request)
            except RequestError:
                self._no_traffic(upstream, before, f"a request with {what} was refused")
                continue
            pytest.fail(
                f"input_support() says {support}, yet a request with {what} was not refused "
                "by imagen.pipeline.check_request: declare exactly what the backend accepts"
            )

    def test_a_mask_of_another_size_is_refused(
        self, backend: Backend, base_request: Request, upstream: Any, tmp_path: Path
    ) -> None:
        support = self._support(backend)
        if not (support.mask and support.images):
            pytest.skip("the backend takes no mask (input_support().mask): nothing to check")
        width, height = self._size(base_request)
        image = make_input(tmp_path, "image", (width, height), seed=400)
        wrong = make_input(tmp_path, "mask", (width + 8, height), seed=401, mode="L")
        right = make_input(tmp_path, "mask", (width, height), seed=402, mode="L")
        before = self._requests_so_far(upstream)
        with pytest.raises(RequestError, match="the same size"):
            base_request.replace(inputs=(image, wrong))
        self._no_traffic(upstream, before, "a mask of another size was refused")
        _, masked = self._run(backend, base_request.replace(inputs=(image, right)))
        if not self.has_upstream:
            _, unmasked = self._run(backend, base_request.replace(inputs=(image,)))
            if masked == unmasked:
                pytest.fail("a mask made no difference to the image: apply it where it says")

    def test_strength_is_honoured_or_listed_as_ignored(
        self, backend: Backend, base_request: Request, upstream: Any, tmp_path: Path
    ) -> None:
        support = self._support(backend)
        role = self._first_role(support)
        item = make_input(tmp_path, role, self._size(base_request), seed=500)
        request = base_request.replace(inputs=(item,), strength=PROBE_STRENGTH)
        result, probe = self._run(backend, request)
        if not support.strength:
            return  # imagen lists it as ignored; the backend must only not fail on it
        if "strength" in self._ignored(result):
            pytest.fail("input_support().strength is True but the result lists strength as ignored")
        if self.has_upstream:
            self._need_upstream(upstream)
            seen = self.seen_strength(upstream)
            if seen != PROBE_STRENGTH:
                pytest.fail(
                    f"strength {PROBE_STRENGTH} was asked, the upstream received {seen!r}: send "
                    "it (as denoise, prompt_strength, ...), set input_support().strength False, "
                    "or override seen_strength() to report what the stand-in got"
                )
            return
        _, other = self._run(backend, request.replace(strength=0.9))
        if other == probe:
            pytest.fail(
                f"strength {PROBE_STRENGTH} and 0.9 gave the same image: honour it, or set "
                "input_support().strength False so imagen lists it as ignored"
            )

    def test_a_large_input_is_streamed(
        self, backend: Backend, base_request: Request, upstream: Any, tmp_path: Path
    ) -> None:
        support = self._support(backend)
        role = self._first_role(support)
        large = make_input(
            tmp_path, role, self._size(base_request), seed=600, pad_to=LARGE_INPUT_BYTES
        )
        assert isinstance(large, MeteredInput)
        before = self._seen_before(upstream, [large])
        try:
            self._run(backend, base_request.replace(inputs=(large,)))
        except Exception as exc:  # noqa: BLE001 (any failure is the finding)
            pytest.fail(f"a {large.size / 2**20:.0f} MB input failed: {type(exc).__name__}: {exc}")
        if self.has_upstream:
            self._need_upstream(upstream)
            self._arrived(upstream, [large], before, f"a {large.size / 2**20:.0f} MB input")
        meter = large.meter
        if meter.total < large.size // 2:
            pytest.fail(
                f"of a {large.size:,}-byte input, {meter.total:,} bytes were read through "
                "InputImage.open(): read input files through it (the suite, and imagen, count "
                "on it), never by their path"
            )
        if meter.total > 2 * large.size + _READ_SLACK:
            pytest.fail(
                f"a {large.size:,}-byte input was read {meter.total / large.size:.1f} times "
                f"over ({meter.opens} opens): read each input once, streamed"
            )
        if not self.reads_inputs_whole and meter.largest > _WHOLE_READ:
            pytest.fail(
                f"one read() took {meter.largest:,} bytes of a {large.size:,}-byte input: "
                "stream the file (hand the open file to the HTTP client, or read it in "
                "chunks) instead of holding it whole; set reads_inputs_whole = True only for "
                "an upstream that takes inputs inline alone"
            )
