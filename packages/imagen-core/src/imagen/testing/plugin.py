"""imagen's pytest plugin, loaded through pytest's ``pytest11`` entry point.

It parametrizes the conformance suite's invalid-slice check from the test class's
``invalid_slices``, scrubs credentials from the reports of conformance tests (a failing
check, or an error a backend raised, must not print a secret into a CI log), and offers a
``recording_context`` fixture to every test.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from imagen.testing.base import SECRETS, ConformanceBase, InvalidSlice
from imagen.testing.recording import RecordingContext


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    cls = metafunc.cls
    if cls is None or not issubclass(cls, ConformanceBase):
        return
    if "invalid_slice" not in metafunc.fixturenames:
        return
    slices = list(cls.invalid_slices)
    if not slices:
        raise pytest.UsageError(
            f"{cls.__name__}.invalid_slices is empty: give at least one InvalidSlice "
            "(a slice construction must refuse, and the key its error must name)"
        )
    for item in slices:
        if not isinstance(item, InvalidSlice):
            raise pytest.UsageError(
                f"{cls.__name__}.invalid_slices holds {item!r}, not an InvalidSlice"
            )
    ids = [item.id or f"{item.key}-{index}" for index, item in enumerate(slices)]
    metafunc.parametrize("invalid_slice", slices, ids=ids)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    probe = item.stash.get(SECRETS, None)
    if not probe:
        return report
    if report.longrepr is not None:
        text = str(report.longrepr)
        scrubbed = probe.redact(text)
        if scrubbed != text:
            report.longrepr = scrubbed
    report.sections = [(name, probe.redact(content)) for name, content in report.sections]
    return report


@pytest.fixture
def recording_context() -> RecordingContext:
    """A Context that records progress reports and run ids."""
    return RecordingContext()
