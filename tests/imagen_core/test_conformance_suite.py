"""The conformance suite catches real defects: each broken backend fails its matching check.

One deliberately broken backend per check, so a check that stops catching its defect fails
here. Two families: the built-in ``mock`` (no upstream) broken in what it hands back, and
``sdwebui`` (an AUTOMATIC1111 adapter with a loopback stand-in, beside this file) broken in
how it treats its upstream. The 13 kinds of defect issue 13 lists are marked ``#13``.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

from imagen.testing.leaks import SecretProbe

HERE = Path(__file__).resolve().parent

BROKEN = textwrap.dedent(
    """
    import random
    import time

    import httpx
    from imagen import Backend, Progress, run_blocking
    from imagen.backends.mock import MockBackend
    from imagen.errors import ConfigError, TransientBackendError
    from imagen.inputs import InputSupport

    from sdwebui import SdWebUIBackend


    # -- the mock, broken in what it hands back ---------------------------------------------


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
            token = self.config.environ["TOKEN"]
            result.metadata["request_headers"] = {"Authorization": "Bearer " + token}
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


    class IgnoresSize(MockBackend):  # 13: asked 96x64, returns the slice's default size
        def generate(self, request, context):
            return super().generate(request.replace(width=None, height=None), context)


    class LeaksHalfASecret(MockBackend):  # 13: a "masked" token that masks too little
        def generate(self, request, context):
            result = super().generate(request, context)
            token = self.config.environ["TOKEN"]
            result.metadata["token"] = token[: len(token) // 2] + "..."
            return result


    class WrongBatchSeeds(MockBackend):  # 13: every image claims the request's seed
        def generate(self, request, context):
            result = super().generate(request, context)
            for image in result.images:
                image.seed = request.seed
            return result


    class DropsUnknownOptions(MockBackend):  # 13: a misspelt --opt vanishes without a word
        def generate(self, request, context):
            result = super().generate(request, context)
            ignored = [n for n in result.metadata.get("ignored", []) if not n.startswith("options.")]
            result.metadata["ignored"] = ignored
            return result


    class TruncatedPng(MockBackend):  # 13: the last chunk (IEND) never arrives
        def generate(self, request, context):
            result = super().generate(request, context)
            for image in result.images:
                image.stream = type(image.stream)(image.stream.read()[:-12])
            return result


    class NotJsonReady(MockBackend):  # 13: a set in the metadata
        def generate(self, request, context):
            result = super().generate(request, context)
            result.metadata["tags"] = {"lighthouse", "dusk"}
            return result


    class LaxConfig(MockBackend):  # 13: validates only what its author thought of
        def __init__(self, config):
            Backend.__init__(self, config)
            self.format = config.choice("format", ("png", "jpeg", "webp"), "png")
            self.width = config.settings.get("width", 512)  # no check_keys, no type
            self.height = config.settings.get("height", 512)
            self.price = 0.0


    class IgnoresInputs(MockBackend):  # declares inputs, draws from the prompt alone
        def generate(self, request, context):
            return super().generate(request.replace(inputs=(), strength=None), context)


    class ReadsInputsWhole(MockBackend):  # holds each input file in memory at once
        def generate(self, request, context):
            for item in request.inputs:
                with item.open() as stream:
                    stream.read()
            return super().generate(request, context)


    class OverDeclaresInputs(MockBackend):  # says two images, handles one
        def input_support(self):
            return InputSupport(images=2, references=4, mask=True, strength=True)


    # -- the AUTOMATIC1111 adapter, broken in how it treats its upstream --------------------


    class LeaksBasicAuth(SdWebUIBackend):  # 13: echoes the request's Authorization header
        def status_error(self, response, path):
            error = super().status_error(response, path)
            error.message += f" (request headers: {dict(response.request.headers)})"
            return error


    class NoUpstreamCancel(SdWebUIBackend):  # 13: stops waiting, the run goes on upstream
        def txt2img(self, payload, context):
            return run_blocking(
                lambda: self.call("POST", "/sdapi/v1/txt2img", json=payload),
                context,
                timeout_s=self.timeout_s,
            )


    class BlindRetry(SdWebUIBackend):  # 13: a paid POST repeated after a network error
        def txt2img(self, payload, context):
            for attempt in range(3):
                try:
                    return super().txt2img(payload, context)
                except TransientBackendError:
                    if attempt == 2:
                        raise


    class NoTimeout(SdWebUIBackend):  # 13: a silent upstream is waited on for ever
        def __init__(self, config):
            super().__init__(config)
            self.client.timeout = httpx.Timeout(None)

        def txt2img(self, payload, context):
            return run_blocking(
                lambda: self.call("POST", "/sdapi/v1/txt2img", json=payload),
                context,
                interrupt=self.interrupt,
            )


    class DropsInitImages(SdWebUIBackend):  # declares img2img, sends txt2img
        def payload(self, request):
            return self.text_payload(request)


    class NetworkInConstructor(SdWebUIBackend):  # 13: checks the model at construction
        def __init__(self, config):
            super().__init__(config)
            self.client.get("/sdapi/v1/options")
    """
)

LIGHT_PLUGIN = textwrap.dedent(
    """
    from imagen import hookimpl


    def sdwebui(config):
        from sdwebui import SdWebUIBackend

        return SdWebUIBackend(config)


    @hookimpl
    def imagen_backend():
        return {"sdwebui": sdwebui}
    """
)

HEAVY_PLUGIN = textwrap.dedent(
    """
    import httpx  # 13: heavy imports at plugin load
    from PIL import Image

    from imagen import hookimpl
    from sdwebui import SdWebUIBackend


    @hookimpl
    def imagen_backend():
        return {"sdwebui": SdWebUIBackend}
    """
)

TESTS = textwrap.dedent(
    """
    import pytest

    import broken
    from imagen.backends.mock import MockBackend
    from imagen.testing import BackendConformance, InvalidSlice
    from sdwebui import AUTH, SdWebUIBackend, SdWebUIStandIn


    class Mock(BackendConformance):
        backend_type = "mock"
        broken = MockBackend
        invalid_slices = (InvalidSlice({"width": 3}, "width", id="width"),)
        ignores = frozenset({"negative_prompt", "steps"})
        has_upstream = False
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


    class SdWebUI(BackendConformance):
        backend_type = "sdwebui"
        broken = SdWebUIBackend
        plugin_module = "light_plugin"
        invalid_slices = (
            InvalidSlice({}, "base_url", id="no-base-url"),
            InvalidSlice({"base_url": "http://x", "auth_env": "SD_AUTH"}, "auth_env",
                         environ={"SD_AUTH": "no-colon-here"}, id="not-user-password"),
        )
        timeout_key = "timeout_s"
        hang_timeout_s = 0.5
        slow_run_s = 3.0
        cancel_within_s = 3.0

        @pytest.fixture
        def backend_factory(self):
            return self.broken

        @pytest.fixture
        def upstream(self):
            with SdWebUIStandIn() as server:
                yield server

        @pytest.fixture
        def valid_slice(self, upstream):
            return {"base_url": upstream.url, "auth_env": "SD_AUTH", "retry_attempts": 2}

        @pytest.fixture
        def environ(self):
            return {"SD_AUTH": AUTH}

        def seen_seed(self, upstream):
            return upstream.last_seed

        reads_inputs_whole = True  # img2img takes base64 in JSON alone
    """
)

MOCK_CLASSES = [
    *("WrongMime", "IgnoresCount", "SwallowsCancellation", "UntypedErrors", "LeaksSecret"),
    *("UnnamedConfigError", "ProgressAfterFinished", "FalseReproducible", "UnlistedIgnore"),
    *("IgnoresSize", "LeaksHalfASecret", "WrongBatchSeeds", "DropsUnknownOptions"),
    *("TruncatedPng", "NotJsonReady"),
    *("IgnoresInputs", "ReadsInputsWhole", "OverDeclaresInputs"),
]
SDWEBUI_CLASSES = ["LeaksBasicAuth", "NoUpstreamCancel", "BlindRetry", "NoTimeout"]
SDWEBUI_CLASSES += ["NetworkInConstructor", "DropsInitImages"]

# Checks that read and decode images: an image that isn't one fails them all.
DECODING = {
    "test_images_match_their_mime_type_and_decode",
    "test_images_have_the_requested_size",
    "test_count_gives_that_many_images",
    "test_seed_is_honoured_or_listed_as_ignored",
    "test_each_image_seed_makes_that_image",
    "test_ignored_fields_are_listed",
    "test_metadata_is_json_ready",
    "test_progress_is_well_formed_and_ordered",
    "test_no_secret_reaches_metadata_or_errors",
    "test_an_input_image_arrives",
    "test_the_declared_inputs_are_all_accepted",
    "test_a_mask_of_another_size_is_refused",
    "test_strength_is_honoured_or_listed_as_ignored",
    "test_a_large_input_is_streamed",
}
LEAKING_STATUSES = {
    f"test_upstream_statuses_map_to_error_types[{s}]" for s in (400, 401, 403, 404, 422)
}

EXPECTED_FAILURES = {
    "TestHealthy": set(),
    "TestWrongMime": DECODING,
    "TestIgnoresCount": {
        "test_count_gives_that_many_images",
        "test_each_image_seed_makes_that_image",
        "test_metadata_is_json_ready",
    },
    "TestSwallowsCancellation": {"test_cancellation_mid_run_raises_cancelled_promptly"},
    "TestUntypedErrors": {
        "test_upstream_errors_arrive_typed[transient-TransientBackendError]",
        "test_upstream_errors_arrive_typed[permanent-PermanentBackendError]",
    },
    "TestLeaksSecret": {"test_no_secret_reaches_metadata_or_errors"},
    "TestUnnamedConfigError": {"test_invalid_slice_is_a_config_error_naming_the_key[width]"},
    "TestProgressAfterFinished": {"test_progress_is_well_formed_and_ordered"},
    "TestFalseReproducible": {
        "test_seed_is_honoured_or_listed_as_ignored",
        "test_each_image_seed_makes_that_image",
    },
    "TestUnlistedIgnore": {"test_ignored_fields_are_listed"},
    # The 13 kinds of defect of issue 13:
    "TestIgnoresSize": {"test_images_have_the_requested_size"},
    "TestLeaksHalfASecret": {"test_no_secret_reaches_metadata_or_errors"},
    "TestWrongBatchSeeds": {"test_each_image_seed_makes_that_image"},
    "TestDropsUnknownOptions": {"test_ignored_fields_are_listed"},
    "TestTruncatedPng": DECODING,
    "TestNotJsonReady": {"test_metadata_is_json_ready"},
    "TestLaxConfig": {"test_an_unknown_key_is_refused", "test_each_key_is_type_checked"},
    "TestHeavyPlugin": {"test_plugin_import_is_light"},
    # Input images (issue 16):
    "TestIgnoresInputs": {
        "test_an_input_image_arrives",
        "test_a_mask_of_another_size_is_refused",
        "test_strength_is_honoured_or_listed_as_ignored",
        "test_a_large_input_is_streamed",
    },
    "TestReadsInputsWhole": {"test_a_large_input_is_streamed"},
    "TestOverDeclaresInputs": {"test_the_declared_inputs_are_all_accepted"},
    "TestHealthySdWebUI": set(),
    "TestLeaksBasicAuth": {
        "test_upstream_errors_arrive_typed[transient-TransientBackendError]",
        "test_upstream_errors_arrive_typed[permanent-PermanentBackendError]",
        *LEAKING_STATUSES,
    },
    "TestNoUpstreamCancel": {"test_cancellation_reaches_the_upstream"},
    "TestBlindRetry": {"test_a_dropped_submission_is_not_repeated"},
    "TestNoTimeout": {"test_a_hanging_upstream_times_out"},
    "TestNetworkInConstructor": {"test_constructor_makes_no_network_call"},
    "TestDropsInitImages": {
        "test_an_input_image_arrives",
        "test_the_declared_inputs_are_all_accepted",
        "test_strength_is_honoured_or_listed_as_ignored",
        "test_a_large_input_is_streamed",
    },
}
# What each of the 13 kinds must tell its author (a piece of the failure's message).
ADVICE = {
    "TestIgnoresSize": "send width and height upstream",
    "TestLeaksHalfASecret": "a piece of $TOKEN (8 of its 17 characters) appears in the metadata",
    "TestLeaksBasicAuth": "the base64 of $SD_AUTH appears in",
    "TestNoUpstreamCancel": "never told the upstream",
    "TestBlindRetry": "submitted 2 times for one request",
    "TestNoTimeout": "give every upstream call a timeout from timeout_s",
    "TestHeavyPlugin": "(and calling its imagen_backend hook) loads PIL",
    "TestNetworkInConstructor": "the constructor tried the network",
    "TestWrongBatchSeeds": "set GeneratedImage.seed only to the seed that makes that very image",
    "TestDropsUnknownOptions": "is not listed as 'options.imagen_conformance_probe'",
    "TestTruncatedPng": "the PNG has no IEND chunk",
    "TestNotJsonReady": "metadata['tags'] is a set",
    "TestLaxConfig": "call config.check_keys(KNOWN_KEYS)",
    "TestIgnoresInputs": "two different image inputs gave the same image",
    "TestReadsInputsWhole": "stream the file",
    "TestOverDeclaresInputs": "declare only what the upstream takes",
    "TestDropsInitImages": "the upstream never received image",
}
# The checks of input images, skipped for a backend that takes none (sdwebui here).
INPUT_CHECKS = {
    "test_an_input_image_arrives",
    "test_the_declared_inputs_are_all_accepted",
    "test_more_inputs_than_declared_are_refused_before_any_call",
    "test_a_mask_of_another_size_is_refused",
    "test_strength_is_honoured_or_listed_as_ignored",
    "test_a_large_input_is_streamed",
}


def _test_module() -> str:
    classes = ["\n\nclass TestHealthy(Mock):\n    pass\n"]
    classes += [
        f"\n\nclass Test{name}(Mock):\n    broken = broken.{name}\n" for name in MOCK_CLASSES
    ]
    classes.append(
        "\n\nclass TestLaxConfig(Mock):\n    broken = broken.LaxConfig\n"
        '    invalid_slices = (InvalidSlice({"format": "gif"}, "format"),)\n'
    )
    classes.append("\n\nclass TestHealthySdWebUI(SdWebUI):\n    pass\n")
    classes.append('\n\nclass TestHeavyPlugin(SdWebUI):\n    plugin_module = "heavy_plugin"\n')
    classes += [
        f"\n\nclass Test{name}(SdWebUI):\n    broken = broken.{name}\n" for name in SDWEBUI_CLASSES
    ]
    return TESTS + "".join(classes)


@pytest.fixture
def broken_suite(pytester, monkeypatch):
    # Run in a subprocess: an inline run would drop the httpcore modules it imported on
    # its way out, and httpx, imported before, would no longer map their exceptions.
    path = os.pathsep.join([str(HERE), str(pytester.path), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path)
    pytester.makepyfile(
        broken=BROKEN,
        light_plugin=LIGHT_PLUGIN,
        heavy_plugin=HEAVY_PLUGIN,
        test_broken=_test_module(),
    )
    return pytester


def test_each_defect_fails_its_matching_check(broken_suite):
    report = broken_suite.path / "report.xml"
    broken_suite.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={report}")
    results: dict[str, dict[str, str]] = {}
    messages: dict[str, str] = {}
    checks: dict[str, int] = {}
    for case in ElementTree.parse(report).iter("testcase"):
        cls = case.get("classname").rpartition(".")[2]
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
                messages[cls] = messages.get(cls, "") + (child.get("message") or "")
                messages[cls] += child.text or ""
            elif child.tag == "skipped":
                outcome = "skipped"
        results.setdefault(cls, {})[case.get("name")] = outcome
        checks[cls] = checks.get(cls, 0) + 1
    assert set(results) == set(EXPECTED_FAILURES)
    for cls, expected in EXPECTED_FAILURES.items():
        failed = {name for name, outcome in results[cls].items() if outcome == "failed"}
        assert failed == expected, f"{cls}: failed {sorted(failed)}, expected {sorted(expected)}"
    for cls, advice in ADVICE.items():
        assert advice in messages[cls], f"{cls} is not told: {advice!r}"
    # Every check ran to its end on the adapter with an upstream (img2img for the input
    # checks); none was skipped there, and the mock skipped no input check either.
    skipped = {n for n, outcome in results["TestHealthySdWebUI"].items() if outcome == "skipped"}
    assert not skipped
    healthy = {n for n, outcome in results["TestHealthy"].items() if outcome == "passed"}
    assert healthy >= INPUT_CHECKS
    assert checks["TestHealthySdWebUI"] == checks["TestLeaksBasicAuth"] == 40


def test_a_failing_secret_check_never_prints_the_secret(broken_suite):
    # The CI log is the pytest output, with every detail pytest can give.
    result = broken_suite.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-l",
        "-vv",
        "--tb=long",
        "-rA",
        "-k",
        "LeaksBasicAuth or LeaksHalfASecret or LeaksSecret",
    )
    output = result.stdout.str() + result.stderr.str()
    assert "failed" in output  # the leaks were caught...
    probe = SecretProbe(
        {"SD_AUTH": "webui-user:correct-horse-battery", "TOKEN": "tok-abcdef-123456"}
    )
    assert probe.find(output) is None  # ...and no form of a secret was printed
    assert "[secret]" in output  # what pytest would have printed was scrubbed


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
            def upstream(self):
                return object()

            @pytest.fixture
            def valid_slice(self, upstream):
                return {}

            def test_only_this(self, upstream, base_request):
                self.make_slow(upstream, base_request, 1)

            def test_also_this(self, upstream, base_request):
                self.make_drop(upstream, base_request)

            def test_also_traffic(self, upstream):
                self.traffic(upstream)
        """
    )
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "-k", "only_this or also_this or also_traffic"
    )
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(
        [
            "*give your stand-in slow_next() (see imagen.testing.StandIn), or override make_slow()*",
            "*give your stand-in drop_next() (LoopbackServer gives it; declare submission_routes)*",
            "*give your stand-in a `traffic`*",
        ]
    )


def test_an_adapter_with_an_upstream_must_name_its_timeout_key(broken_suite):
    broken_suite.makepyfile(
        test_notimeout="""
        from test_broken import SdWebUI

        class TestNoKey(SdWebUI):
            timeout_key = None
        """
    )
    result = broken_suite.runpytest_subprocess(
        "-p", "no:cacheprovider", "test_notimeout.py", "-k", "hanging_upstream"
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*set TestNoKey.timeout_key to the slice key that bounds*"])
