"""Runs in flight (``imagen.runs``), ``imagen resume`` with any backend, and the CLI's lines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from imagen import (
    Backend,
    Cancelled,
    GeneratedImage,
    OutputError,
    PermanentBackendError,
    Request,
    Result,
    RunLostError,
    TransientBackendError,
    hookimpl,
)
from imagen.cli import one_line
from imagen.runs import RunBook, RunRecord, RunRecordError, may_go_on

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def _record(run_id: str = "3f2a9c", **changes) -> RunRecord:
    request = Request("a lighthouse", seed=42, style="noir", width=64, options={"cfg": 2})
    fields = {
        "run_id": run_id,
        "backend": "gpu",
        "backend_type": "comfyui",
        "config": "/home/u/imagen.yaml",
        "request": request,
        "styled": request.replace(prompt="a lighthouse, film noir"),
        "output_dir": "/home/u/Pictures/imagen",
        "preview": None,
        "explicit": ("seed",),
        **changes,
    }
    return RunRecord.new(**fields)


# -- the record book ------------------------------------------------------------------------


def test_a_record_reads_back_as_written(tmp_path):
    book = RunBook(tmp_path / "runs")
    record = _record()
    book.save(record)
    assert book.records() == [record]
    assert book.find("3f2a9c") == record
    assert book.find("3f2") == record  # a prefix that names one run
    assert book.find("zzz") is None
    assert oct((tmp_path / "runs").stat().st_mode & 0o777) == "0o700"
    book.save(record.with_run_id("3f2a9c,77b1"))  # a backend reporting one more prediction
    assert [r.run_id for r in book.records()] == ["3f2a9c,77b1"]
    book.forget(record)
    book.forget(record)  # already gone: nothing happens
    assert book.records() == []


def test_a_prefix_that_fits_several_runs_names_them(tmp_path):
    book = RunBook(tmp_path)
    book.save(_record("abc1"))
    book.save(_record("abc2"))
    with pytest.raises(RunRecordError, match="'abc' fits several runs: abc"):
        book.find("abc")
    assert book.find("abc2").run_id == "abc2"


def test_newest_first(tmp_path):
    book = RunBook(tmp_path)
    book.save(_record("old", started=datetime(2024, 1, 1, tzinfo=UTC)))
    book.save(_record("new", started=datetime(2025, 1, 1, tzinfo=UTC)))
    assert [r.run_id for r in book.records()] == ["new", "old"]


@settings(max_examples=150)
@given(content=JSON)
def test_any_file_content_is_reported_never_raised(content):
    with tempfile.TemporaryDirectory() as tmp:
        book = RunBook(Path(tmp))
        good = _record()
        book.save(good)
        name = "0" * 32 + ".json"
        (book.directory / name).write_text(json.dumps(content))
        records = book.records()  # never raises
        assert records[-1] == good or records[0] == good
        if len(records) == 1:
            assert book.problems
            assert book.problems[0].startswith(str(book.directory / name))


@settings(max_examples=80)
@given(data=st.data())
def test_a_damaged_record_is_reported_never_raised(data):
    with tempfile.TemporaryDirectory() as tmp:
        book = RunBook(Path(tmp))
        book.save(_record())
        (path,) = book.directory.glob("*.json")
        fields = json.loads(path.read_text())
        key = data.draw(st.sampled_from(sorted(fields)))
        fields[key] = data.draw(JSON)
        path.write_text(json.dumps(fields))
        records = book.records()  # never raises
        assert len(records) + len(book.problems) == 1
        path.write_bytes(b"\xff\xfe not text")
        assert book.records() == []
        assert len(book.problems) == 1


@settings(max_examples=80)
@given(run_id=st.text(min_size=1))
def test_any_run_id_round_trips_and_names_no_file(run_id):
    with tempfile.TemporaryDirectory() as tmp:
        book = RunBook(Path(tmp))
        record = _record(run_id)
        book.save(record)
        assert book.find(run_id) == record
        assert [p.name for p in book.directory.iterdir()] == [f"{record.key}.json"]


def test_a_process_following_a_run(tmp_path):
    record = _record()
    assert not record.followed_elsewhere()  # this process
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from imagen import runs

        other = RunRecord.from_json(
            {
                **record.to_json(),
                "pid": sleeper.pid,
                "process_start": runs._started(sleeper.pid),
            }
        )
        assert other.followed_elsewhere()
        reused = RunRecord.from_json({**other.to_json(), "process_start": "1"})
        assert not reused.followed_elsewhere()  # the pid, but another process
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not other.followed_elsewhere()
    elsewhere = RunRecord.from_json({**other.to_json(), "host": "another-machine"})
    assert not elsewhere.followed_elsewhere()


@pytest.mark.parametrize(
    ("error", "goes_on"),
    [
        (None, False),
        (Cancelled(), False),
        (KeyboardInterrupt(), False),
        (PermanentBackendError("bad prompt"), False),
        (RunLostError("gone"), False),
        (TransientBackendError("cannot reach"), True),
        (OutputError("disk full"), True),
        (RuntimeError("a bug"), True),
    ],
)
def test_which_endings_keep_the_record(error, goes_on):
    assert may_go_on(error) is goes_on


# -- one line per error ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("one line", "one line"),
        ("trailing newline\n", "trailing newline"),
        ("\n\nfirst\nsecond\n", "first (+1 more line: rerun with --debug)"),
        ("a\n b\n c\n", "a (+2 more lines: rerun with --debug)"),
        ("", ""),
    ],
)
def test_one_line(text, shown):
    assert one_line(text) == shown
    assert one_line(text, debug=True) == text


# -- the CLI with any backend that can re-attach ------------------------------------------------


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


class _Upstream:
    """A pretend service that keeps runs: each is done or not, and may be lost."""

    runs: ClassVar[dict[str, str]] = {}
    submitted: ClassVar[int] = 0


class _Resumable(Backend):
    """Reports a run id, then (when asked) loses its upstream; ignores width and height."""

    def generate(self, request, context):
        _Upstream.submitted += 1
        run_id = f"run-{_Upstream.submitted}"
        _Upstream.runs[run_id] = "running"
        context.report_run_id(run_id)
        if request.options.get("unreachable"):
            raise TransientBackendError("cannot reach the service\nmore detail", upstream_id=run_id)
        return self._done(run_id, request)

    def resume(self, run_id, request, context):
        context.report_run_id(run_id)
        if _Upstream.runs.get(run_id) != "running":
            raise RunLostError(f"run {run_id} was lost")
        return self._done(run_id, request)

    def _done(self, run_id, request):
        _Upstream.runs[run_id] = "done"
        ignored = [name for name in ("width", "height") if getattr(request, name)]
        metadata = {"upstream_id": run_id, "ignored": ignored, "prompt_seen": request.prompt}
        return Result([GeneratedImage.from_bytes(_png(), "image/png")], metadata)


class _Plugin:
    @staticmethod
    @hookimpl
    def imagen_backend():
        return {"resumable": _Resumable}


@pytest.fixture
def resumable(home, register_plugin):
    _Upstream.runs.clear()
    _Upstream.submitted = 0
    register_plugin(_Plugin(), "resumable-test")
    home.write_config(
        """
        default_backend: r
        backends:
          r:
            type: resumable
        styles:
          noir:
            suffix: ", film noir"
        """
    )
    return home


def _runs(home) -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "imagen" / "runs"


def test_size_ignored_by_any_backend_is_warned_about(resumable, cli):
    result = cli("generate", "x", "--size", "64x48")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == 'imagen: backend "r" ignored: width, height\n'
    result = cli("generate", "x", "--width", "64")
    assert result.stderr == 'imagen: backend "r" ignored: width\n'
    assert cli("generate", "x").stderr == ""


def test_a_run_given_up_on_is_resumed_with_its_original_request(resumable, cli):
    failed = cli("generate", "a cat", "--style", "noir", "--seed", "9", "--opt", "unreachable=true")
    assert failed.exit_code == 5
    assert failed.stderr == (
        'imagen: backend "r": cannot reach the service (+1 more line: rerun with --debug); '
        "to save its images later: imagen resume run-1\n"
    )
    (path,) = _runs(resumable).glob("*.json")
    assert json.loads(path.read_text())["run_id"] == "run-1"
    resumable.write_config("backends:\n  r:\n    type: resumable\n")  # the style is gone now

    resumed = cli("resume", "run-1", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    (image,) = json.loads(resumed.stdout)["images"]
    record = json.loads(Path(image["sidecar"]).read_text())
    assert (record["prompt"], record["final_prompt"], record["seed"]) == (
        "a cat",
        "a cat, film noir",
        9,
    )
    assert record["metadata"]["prompt_seen"] == "a cat, film noir"
    assert record["options"] == {"unreachable": True}
    assert _Upstream.submitted == 1  # resumed, not submitted again
    assert not any(_runs(resumable).glob("*.json"))


def test_a_finished_run_leaves_no_record_and_a_lost_one_is_forgotten(resumable, cli):
    assert cli("generate", "done").exit_code == 0
    assert not any(_runs(resumable).glob("*.json"))
    cli("generate", "x", "--opt", "unreachable=true")
    _Upstream.runs["run-2"] = "lost upstream"
    lost = cli("resume", "--yes")
    assert lost.exit_code == 4
    notice, error = lost.stderr.splitlines()
    assert notice.startswith('imagen: resuming run run-2 (backend "r", "x", started ')
    assert error.startswith(
        'imagen: backend "r": run run-2 was lost; nothing was saved; to make it anew: '
        "imagen generate x --backend r --seed "
    )
    assert error.endswith(" --opt unreachable=true")
    assert not any(_runs(resumable).glob("*.json"))
    assert cli("resume", "--list").stdout == ""


def test_a_record_that_cannot_be_written_warns_once_and_the_run_goes_on(resumable, cli):
    _runs(resumable).parent.mkdir(parents=True, exist_ok=True)
    _runs(resumable).write_text("not a directory")
    result = cli("generate", "x")
    assert result.exit_code == 0
    assert result.stderr.startswith("imagen: cannot record run run-1 in ")
    assert result.stderr.endswith(": `imagen resume` will not know it\n")


def test_a_damaged_record_is_named_by_resume_list(resumable, cli):
    cli("generate", "x", "--opt", "unreachable=true")
    (path,) = _runs(resumable).glob("*.json")
    path.write_text("{")
    listing = cli("resume", "--list")
    assert listing.exit_code == 0
    assert listing.stdout == ""
    assert listing.stderr.startswith(f"imagen: cannot read a run record: {path}: ")


def test_a_log_line_erases_the_progress_line_first(capsys):
    import logging

    from imagen.cli import setup_logging
    from imagen.cli.progress import ProgressLine
    from imagen.context import Progress

    setup_logging()
    line = ProgressLine("gpu", stream=sys.stderr)
    line(Progress("step", 3, 10))
    logging.getLogger("imagen.comfyui").warning("first\nsecond")
    assert ProgressLine.shown is None
    err = capsys.readouterr().err
    assert err.endswith(
        "\r" + " " * len("gpu: [######--------------] 3/10") + "\r"
        "imagen: first (+1 more line: rerun with --debug)\n"
    )
