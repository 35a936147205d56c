"""``imagen history``: every image made, from one index that every entry point feeds."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagen.history.index import HistoryIndex


def _make(home, *prompts: str, **flags: str) -> list[str]:
    made = []
    for prompt in prompts:
        args = ["generate", prompt, "--size", "32x32"]
        for flag, value in flags.items():
            args += [f"--{flag}", value]
        made += home.run(*args, check=True).stdout.split()
    return made


def _history(home, *args: str) -> list[dict]:
    return json.loads(home.run("history", "--json", *args, check=True).stdout)


def test_every_generation_is_listed_newest_first(home):
    home.write_config("styles:\n  noir:\n    suffix: ', film noir'\n")
    paths = _make(home, "a lighthouse at dusk", "a red barn")
    paths += _make(home, "detective", style="noir")
    entries = _history(home)
    assert [e["path"] for e in entries] == [str(Path(p).resolve()) for p in reversed(paths)]
    newest = entries[0]
    assert (newest["prompt"], newest["final_prompt"], newest["style"]) == (
        "detective",
        "detective, film noir",
        "noir",
    )
    assert (newest["backend"], newest["model"], newest["entry"]) == ("mock", "imagen-mock", "cli")
    assert (newest["width"], newest["height"], newest["exists"]) == (32, 32, True)
    assert newest["created"].endswith("Z")
    assert isinstance(newest["seed"], int)
    table = home.run("history", check=True).stdout.splitlines()
    assert table[0].split() == ["ID", "WHEN", "BACKEND", "SIZE", "PROMPT"]
    assert table[1].split()[0] == str(newest["id"])
    assert table[1].endswith("detective")


def test_search_by_words_parts_of_words_and_any_script(home):
    _make(home, "a lighthouse at dusk", "a red barn at dawn", "日本語の灯台", "Café de Flore")
    assert [e["prompt"] for e in _history(home, "light")] == ["a lighthouse at dusk"]
    assert [e["prompt"] for e in _history(home, "LIGHT", "dusk")] == ["a lighthouse at dusk"]
    assert _history(home, "light", "dawn") == []  # every word must appear
    assert [e["prompt"] for e in _history(home, "日本")] == ["日本語の灯台"]
    assert [e["prompt"] for e in _history(home, "灯台")] == ["日本語の灯台"]
    assert [e["prompt"] for e in _history(home, "café")] == ["Café de Flore"]
    two = {e["prompt"] for e in _history(home, "at")}  # too short for trigrams: LIKE
    assert two == {"a lighthouse at dusk", "a red barn at dawn"}


def test_filter_by_backend_and_date(home):
    home.write_config("backends:\n  a:\n    type: mock\n  b:\n    type: mock\n")
    _make(home, "one", backend="a")
    _make(home, "two", backend="b")
    assert [e["prompt"] for e in _history(home, "-b", "b")] == ["two"]
    assert len(_history(home, "--since", "1h")) == 2
    tomorrow = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%d")
    assert _history(home, "--since", tomorrow) == []
    assert _history(home, "--until", "1h") == []
    assert len(_history(home, "--until", tomorrow)) == 2
    paths = home.run("history", "--paths", "-n", "1", check=True).stdout.split()
    assert len(paths) == 1
    assert paths[0].endswith(".png")


def test_a_deleted_image_is_marked_and_an_empty_history_says_so(home):
    assert home.run("history", check=True).stderr == "No images yet.\n"
    (path,) = _make(home, "gone soon")
    Path(path).unlink()
    (entry,) = _history(home)
    assert entry["exists"] is False
    assert "(deleted) gone soon" in home.run("history", check=True).stdout


def test_history_can_be_turned_off(home):
    home.write_config("history:\n  record: false\n")
    _make(home, "unrecorded")
    assert _history(home) == []
    home.write_config("history:\n  recrod: false\n")
    proc = home.run("history")
    assert proc.returncode == 3
    assert "history.recrod: unknown key (known: record, path)" in proc.stderr


def test_several_processes_write_at_once(home):
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagen",
                "generate",
                f"batch {n}",
                "-n",
                "5",
                "--size",
                "16x16",
            ],
            cwd=home.cwd,
            env=home.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
    entries = _history(home, "--all")
    assert len(entries) == 20
    assert len({e["id"] for e in entries}) == 20
    assert {e["path"] for e in entries} == {
        str(Path(home.cwd, p).resolve()) for out, _ in outputs for p in out.split()
    }


def _row(n: int, prompt: str | None = None, backend: str = "mock") -> dict:
    return {
        "created": (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n)).isoformat(),
        "path": f"/images/{n}.png",
        "sidecar": None,
        "mime_type": "image/png",
        "prompt": prompt or f"prompt number {n}",
        "final_prompt": prompt or f"prompt number {n}",
        "negative_prompt": "",
        "style": None,
        "backend": backend,
        "backend_type": "mock",
        "model": None,
        "seed": str(2**64 - 1),  # ComfyUI's largest: past SQLite's integers
        "width": 32,
        "height": 32,
        "cost_usd": None,
        "entry": "worker",
        "job_id": n,
        "owner": None,
        "run": str(n),
    }


def test_threads_of_a_worker_write_at_once(tmp_path):
    index = HistoryIndex(tmp_path / "h.sqlite3")
    errors = []

    def write(start: int) -> None:
        try:
            for n in range(start, start + 50):
                index.add([_row(n)])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k * 50,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(index.search(limit=None)) == 400
    assert index.search("number 399")[0].seed == str(2**64 - 1)


def test_searching_many_thousands_uses_the_indexes(tmp_path):
    index = HistoryIndex(tmp_path / "h.sqlite3")
    index.add([_row(n, backend="a" if n % 2 else "b") for n in range(20_000)])
    found = index.search("number 1234", backend="b", since=datetime(2026, 1, 1, tzinfo=UTC))
    expected = [f"prompt number {n}" for n in range(20_000) if "1234" in str(n) and n % 2 == 0]
    assert [e.prompt for e in found] == sorted(expected, key=lambda p: -int(p.split()[-1]))
    with sqlite3.connect(index.path) as conn:
        plan = " ".join(
            row[-1]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM images WHERE id IN "
                "(SELECT rowid FROM images_text WHERE images_text MATCH ?) AND backend = ? "
                "ORDER BY created DESC",
                ('"number"', "b"),
            )
        )
        latest = " ".join(
            row[-1]
            for row in conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM images ORDER BY created DESC, id DESC LIMIT 50"
            )
        )
    assert "VIRTUAL TABLE INDEX" in plan  # the text search reads the FTS index
    assert "SCAN images" not in plan.replace("SCAN images_text", "")
    assert "INDEX images_created" in latest  # the newest fifty without a sort
    assert "TEMP B-TREE" not in latest


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1),
        min_size=1,
        max_size=5,
    ),
    st.data(),
)
def test_hostile_prompts_are_found_by_any_part_and_never_break_the_query(prompts, data):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        index = HistoryIndex(Path(tmp) / "h.sqlite3")
        index.add([_row(n, prompt) for n, prompt in enumerate(prompts)])
        target = data.draw(st.sampled_from(prompts))
        words = target.split()
        if not words:
            return
        word = data.draw(st.sampled_from(words))
        start = data.draw(st.integers(0, len(word) - 1))
        part = word[start : start + data.draw(st.integers(1, len(word) - start))]
        found = [e.prompt for e in index.search(part, limit=None)]
        assert target in found


@pytest.fixture
def failing_after_one_image(register_plugin):
    """A backend whose second image breaks while it is read: the run fails after saving one."""
    from imagen import Backend, GeneratedImage, Result, TransientBackendError
    from imagen.plugins import hookimpl

    class Broken:
        def read(self, size: int = -1) -> bytes:
            raise TransientBackendError("the connection dropped")

        def close(self) -> None:
            pass

    class HalfBackend(Backend):
        def generate(self, request, context):
            from imagen.backends.drawing import render

            good = GeneratedImage.from_bytes(render("x", 1, 16, 16), "image/png")
            return Result([good, GeneratedImage(Broken(), "image/png")])

    class Plugin:
        @hookimpl
        def imagen_backend(self):
            return {"half": HalfBackend}

    register_plugin(Plugin(), "half")


def test_images_a_failed_run_removes_are_forgotten(home, failing_after_one_image):
    from imagen.config import load_config
    from imagen.errors import TransientBackendError
    from imagen.pipeline import generate
    from imagen.request import Request

    home.write_config("backends:\n  half:\n    type: half\n")
    config = load_config()
    with pytest.raises(TransientBackendError):
        generate(config, Request("x", count=2), backend="half", keep_partial=False)
    assert HistoryIndex.default(config).search(limit=None) == []
    with pytest.raises(TransientBackendError):  # the CLI keeps what was saved: so does history
        generate(config, Request("kept", count=2), backend="half")
    assert [e.prompt for e in HistoryIndex.default(config).search(limit=None)] == ["kept"]


def test_threads_creating_the_index_at_once_all_write(tmp_path):
    for attempt in range(10):
        index = HistoryIndex(tmp_path / f"new-{attempt}.sqlite3")
        start = threading.Barrier(6)
        errors = []

        def write(n: int, index=index, start=start, errors=errors) -> None:
            start.wait()
            try:
                index.add([_row(n)])
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert len(index.search(limit=None)) == 6
