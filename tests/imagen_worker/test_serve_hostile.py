"""imagen serve against what a web user (or any database role) may send, and a restart."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from typing import ClassVar

import httpx
import openai
import psycopg
import pytest
from worker_helpers import running, serving

from imagen import Backend, PermanentBackendError, RequestError, hookimpl
from imagen.config import parse_config
from imagen.yamlfile import Located
from imagen_worker.serve.app import create_app
from imagen_worker.serve.settings import ServeSettings, hash_key

KEY = "imk_alice-hostile-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


class _Refusing(Backend):
    """Accepts every request at the door, then fails it: permanently, or as a bad request."""

    calls: ClassVar[int] = 0

    def generate(self, request, context):
        type(self).calls += 1
        if request.prompt.startswith("bad"):
            raise RequestError("the upstream says this prompt is not a request it takes")
        raise PermanentBackendError("the upstream refused for good")


@pytest.fixture
def served(db_url, tmp_path, register_plugin) -> Iterator[tuple[str, object]]:
    class Plugin:
        @staticmethod
        @hookimpl
        def imagen_backend():
            return {"refusing": _Refusing}

    register_plugin(Plugin(), "refusing")
    _Refusing.calls = 0
    config = parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out")},
                "backends": {"mock": {"type": "mock"}, "refusing": {"type": "refusing"}},
            }
        )
    )
    settings = ServeSettings(api_keys={hash_key(KEY): "alice"}, wait_s=30)
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbnails")
    with serving(app) as url, running(config, db_url):
        yield url, app


def _jobs(conn) -> int:
    return conn.execute("SELECT count(*) FROM imagen.jobs").fetchone()[0]


def test_a_size_the_backend_refuses_is_a_400_and_no_job_even_with_the_sdks_retries(served, conn):
    url, _ = served
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY)  # the SDK's default: 2 retries
    with client, pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model="mock", prompt="a lighthouse", size="13x13")
    assert "width 13 is out of bounds for the mock backend" in str(raised.value)
    assert raised.value.body["param"] == "width"
    assert _jobs(conn) == 0


def test_a_failed_generation_tells_the_sdk_not_to_queue_it_again(served, conn):
    url, _ = served
    with openai.OpenAI(base_url=f"{url}/v1", api_key=KEY) as client:
        with pytest.raises(openai.InternalServerError) as raised:
            client.images.generate(model="refusing", prompt="a lighthouse", size="32x32")
        assert raised.value.response.headers["x-should-retry"] == "false"
        with pytest.raises(openai.BadRequestError) as bad:  # a request the upstream refused
            client.images.generate(model="refusing", prompt="bad lighthouse", size="32x32")
    assert bad.value.body["code"] == "invalid_request"
    assert (_jobs(conn), _Refusing.calls) == (2, 2)  # one job each: none queued again


def test_the_first_requests_after_every_connection_died_are_answered(served, conn):
    url, _ = served
    assert httpx.get(f"{url}/v1/jobs", headers=HEADERS).status_code == 200
    killed = conn.execute(  # what a database restart does to the pool's connections
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    ).fetchone()[0]
    assert killed >= 1
    statuses = [httpx.get(f"{url}/v1/jobs", headers=HEADERS).status_code for _ in range(10)]
    assert statuses == [200] * 10


@pytest.mark.parametrize(
    "payload",
    ["x" * 8000, '{"id": 1}', "[" * 7000, "", "\u2603", '{"id": "1", "status": "done"}'],
    ids=["long", "old-json", "nested", "empty", "snowman", "forged-status"],
)
def test_the_progress_listener_ignores_what_it_cannot_use(served, conn, payload):
    url, app = served
    job = httpx.post(
        f"{url}/v1/jobs",
        json={"prompt": "a lighthouse", "size": "32x32", "options": {"delay": 0.5}},
        headers=HEADERS,
    ).json()
    with httpx.stream("GET", f"{url}/v1/jobs/{job['id']}/events", headers=HEADERS) as events:
        with contextlib.suppress(psycopg.Error):  # longer than NOTIFY takes: nothing to ignore
            conn.execute("SELECT pg_notify('imagen_progress', %s)", (payload,))
        seen = [line for line in events.iter_lines() if line.startswith("event: ")]
    assert seen[-1] == "event: done"
    assert app.state.services.watcher._thread.is_alive()


def test_a_web_role_listening_for_progress_learns_no_job(served, db_url):
    url, _ = served
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("SET ROLE authenticated")
        listener.execute("LISTEN imagen_progress")
        listener.execute("LISTEN imagen_jobs")
        job = httpx.post(
            f"{url}/v1/images/generations",
            json={"prompt": "a lighthouse", "size": "32x32"},
            headers=HEADERS,
            timeout=30,
        ).json()["imagen"]["job"]
        heard = list(listener.notifies(timeout=1))
    progress = [n.payload for n in heard if n.channel == "imagen_progress"]
    jobs = [json.loads(n.payload) for n in heard if n.channel == "imagen_jobs"]
    assert progress
    assert all(re.fullmatch(r"[0-9a-f]{24}", payload) for payload in progress)
    assert jobs == [{"event": "inserted"}]
    assert all(str(job) not in json.dumps(item) for item in jobs)


def test_an_unreadable_row_shows_in_the_job_api_without_a_500(served, conn):
    url, _ = served
    conn.execute("ALTER TABLE imagen.jobs DROP CONSTRAINT jobs_options_limits")
    conn.execute(  # as a database from before migration 0003 may hold
        "INSERT INTO imagen.jobs (owner, prompt, options) VALUES ('alice', 'x', %s::jsonb)",
        ('{"a":' + "[" * 5000 + "]" * 5000 + "}",),
    )
    listed = httpx.get(f"{url}/v1/jobs", headers=HEADERS)  # whether the worker failed it yet
    assert listed.status_code == 200
    (job,) = listed.json()["data"]
    assert job["options"] == {}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/images?before=73526329155372225396736&q=lighthouse",  # found by schemathesis
        "/v1/images?job=9223372036854775808&q=lighthouse",
        "/v1/images?before=9223372036854775808",
        "/v1/jobs?before=9223372036854775808",
        "/v1/jobs/9223372036854775808",
        "/v1/images/9223372036854775808",
        "/v1/images/9223372036854775808/file",
        "/v1/images/9223372036854775808/thumbnail",
        "/v1/jobs/9223372036854775808/events",
    ],
)
def test_an_id_past_bigint_is_a_400_naming_the_parameter(served, path):
    url, _ = served
    answer = httpx.get(f"{url}{path}", headers=HEADERS)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] in {"before", "job", "job_id", "image_id"}
    assert "less than or equal to 9223372036854775807" in answer.json()["error"]["message"]


def test_the_largest_bigint_id_is_simply_not_found(served):
    url, _ = served
    biggest = 2**63 - 1
    assert httpx.get(f"{url}/v1/jobs/{biggest}", headers=HEADERS).status_code == 404
    listed = httpx.get(f"{url}/v1/images?before={biggest}&q=lighthouse", headers=HEADERS)
    assert (listed.status_code, listed.json()["data"]) == (200, [])
