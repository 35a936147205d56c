"""The conformance suite catches real defects: each broken backend fails its matching check."""

from __future__ import annotations

import textwrap

BROKEN_BACKENDS = textwrap.dedent(
    """
    import os
    import random
    import time

    import pytest

    from imagen import Progress, Request
    from imagen.backends.mock import MockBackend
    from imagen.backends.drawing import render
    from imagen.errors import ConfigError
    from imagen.request import GeneratedImage, Result
    from imagen.testing import BackendConformance, InvalidSlice


    class WrongMime(MockBackend):
        def generate(self, request, context):
            result = super().generate(request, context)
            for image in result.images:
                image.mime_type = "image/jpeg"  # the bytes are PNG
            return result


    class IgnoresCount(MockBackend):
        def generate(self, request, context):
            return super().generate(request.replace(count=1), context)


    class SwallowsCancellation(MockBackend):
        def generate(self, request, context):
            delay = request.options.get("delay", 0)
            started = time.monotonic()
            while time.monotonic() - started < delay:
                time.sleep(0.05)  # never looks at the context
            options = {k: v for k, v in request.options.items() if k != "delay"}
            return super().generate(request.replace(options=options), context)


    class UntypedErrors(MockBackend):
        def generate(self, request, context):
            if request.options.get("fail"):
                raise RuntimeError("HTTP 503 from upstream")
            return super().generate(request, context)


    class LeaksSecret(MockBackend):
        def generate(self, request, context):
            result = super().generate(request, context)
            result.metadata["request_headers"] = {"Authorization": "Bearer " + self.config.environ["TOKEN"]}
            return result


    class UnnamedConfigError(MockBackend):
        def __init__(self, config):
            if config.settings.get("width") == 3:
                raise ConfigError("bad value")  # names no key
            super().__init__(config)


    class ProgressAfterFinished(MockBackend):
        def generate(self, request, context):
            result = super().generate(request, context)
            context.progress(Progress("step", 1, 2))
            return result


    class FalseReproducible(MockBackend):
        def generate(self, request, context):
            return super().generate(request.replace(seed=random.randrange(2**31)), context)


    class UnlistedIgnore(MockBackend):
        def generate(self, request, context):
            result = super().generate(request, context)
            result.metadata.pop("ignored", None)  # still ignores negative_prompt and steps
            return result


    class Base(BackendConformance):
        backend_type = "mock"
        broken = MockBackend
        invalid_slices = (InvalidSlice({"width": 3}, "width", id="width"),)
        ignores = frozenset({"negative_prompt", "steps"})
        slow_run_s = 4.0
        cancel_within_s = 1.5

        @pytest.fixture
        def backend_factory(self):
            return self.broken

        @pytest.fixture
        def valid_slice(self, upstream):
            return {"width": 64, "height": 64}

        @pytest.fixture
        def environ(self):
            return {"TOKEN": "tok-abcdef-123456"}

        def make_slow(self, upstream, request, seconds):
            return request.replace(options={"delay": seconds})

        def make_failure(self, upstream, request, kind):
            return request.replace(options={"fail": kind})


    class TestHealthy(Base):
        pass


    class TestWrongMime(Base):
        broken = WrongMime


    class TestIgnoresCount(Base):
        broken = IgnoresCount


    class TestSwallowsCancellation(Base):
        broken = SwallowsCancellation


    class TestUntypedErrors(Base):
        broken = UntypedErrors


    class TestLeaksSecret(Base):
        broken = LeaksSecret


    class TestUnnamedConfigError(Base):
        broken = UnnamedConfigError


    class TestProgressAfterFinished(Base):
        broken = ProgressAfterFinished


    class TestFalseReproducible(Base):
        broken = FalseReproducible


    class TestUnlistedIgnore(Base):
        broken = UnlistedIgnore
    """
)

EXPECTED_FAILURES = {
    "TestHealthy": set(),
    "TestWrongMime": {
        "test_images_match_their_mime_type_and_decode",
        "test_count_gives_that_many_images",
        "test_seed_is_honoured_or_listed_as_ignored",
        "test_ignored_fields_are_listed",
        "test_progress_is_well_formed_and_ordered",
        "test_no_secret_reaches_metadata_or_errors",
    },
    "TestIgnoresCount": {"test_count_gives_that_many_images"},
    "TestSwallowsCancellation": {"test_cancellation_mid_run_raises_cancelled_promptly"},
    "TestUntypedErrors": {
        "test_upstream_errors_arrive_typed[transient-TransientBackendError]",
        "test_upstream_errors_arrive_typed[permanent-PermanentBackendError]",
    },
    "TestLeaksSecret": {"test_no_secret_reaches_metadata_or_errors"},
    "TestUnnamedConfigError": {"test_invalid_slice_is_a_config_error_naming_the_key[width]"},
    "TestProgressAfterFinished": {"test_progress_is_well_formed_and_ordered"},
    "TestFalseReproducible": {"test_seed_is_honoured_or_listed_as_ignored"},
    "TestUnlistedIgnore": {"test_ignored_fields_are_listed"},
}


def test_each_defect_fails_its_matching_check(pytester):
    pytester.makepyfile(test_broken=BROKEN_BACKENDS)
    reprec = pytester.inline_run("-p", "no:cacheprovider")
    results: dict[str, dict[str, str]] = {}
    for report in reprec.getreports("pytest_runtest_logreport"):
        if report.when == "call" or report.outcome != "passed":
            cls, name = report.nodeid.split("::")[1:3]
            results.setdefault(cls, {})[name] = report.outcome
    assert set(results) == set(EXPECTED_FAILURES)
    for cls, expected in EXPECTED_FAILURES.items():
        failed = {name for name, outcome in results[cls].items() if outcome == "failed"}
        assert failed == expected, f"{cls}: failed {sorted(failed)}, expected {sorted(expected)}"
        assert len(results[cls]) == 12  # every check ran (one invalid slice); none skipped


def test_an_empty_invalid_slices_is_a_usage_error(pytester):
    pytester.makepyfile(
        test_empty="""
        import pytest
        from imagen.testing import BackendConformance

        class TestNothing(BackendConformance):
            backend_type = "mock"

            @pytest.fixture
            def valid_slice(self, upstream):
                return {}
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*TestNothing.invalid_slices is empty: give at least one InvalidSlice*"]
    )


def test_a_stand_in_without_controls_is_told_what_to_add(pytester):
    pytester.makepyfile(
        test_nocontrols="""
        import pytest
        from imagen.testing import BackendConformance, InvalidSlice

        class TestNoControls(BackendConformance):
            backend_type = "mock"
            invalid_slices = [InvalidSlice({"width": 3}, "width")]

            @pytest.fixture
            def valid_slice(self, upstream):
                return {}

            def test_only_this(self, upstream, base_request):
                self.make_slow(upstream, base_request, 1)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-k", "test_only_this")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*give your stand-in slow_next(seconds), or override make_slow()*"]
    )
