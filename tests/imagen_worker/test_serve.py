"""imagen serve, driven by the official openai SDK, with a worker behind it."""

from __future__ import annotations

import base64
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import openai
import pytest
from PIL import Image
from worker_helpers import running, serving

from imagen.config import parse_config
from imagen.yamlfile import Located
from imagen_worker.serve.app import create_app
from imagen_worker.serve.settings import ServeSettings, hash_key

ALICE_KEY = "imk_alice-test-key"
JWT_SECRET = "a-jwt-secret-at-least-32-bytes-long-0123"
BOB_KEY = "imk_bob-test-key"


@pytest.fixture
def server(db_url, tmp_path) -> Iterator[str]:
    config = parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out"), "write_metadata_json": False},
                "backends": {
                    "mock": {"type": "mock"},
                    "priced": {"type": "mock", "price_per_image_usd": 0.25},
                },
                "styles": {"noir": {"suffix": ", film noir"}},
            }
        )
    )
    settings = ServeSettings(
        api_keys={hash_key(ALICE_KEY): "alice", hash_key(BOB_KEY): "bob"},
        wait_s=30,
        max_images=4,
        jwt_secret=JWT_SECRET,
    )
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbnails")
    with serving(app) as url, running(config, db_url):
        yield url


def _client(server: str, key: str = ALICE_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0)


def test_the_openai_sdk_generates_through_the_builtin_backend(server):
    with _client(server) as client:
        result = client.images.generate(model="mock", prompt="a lighthouse", n=2, size="64x48")
        assert len(result.data) == 2
        for image in result.data:
            data = base64.b64decode(image.b64_json)
            assert data.startswith(b"\x89PNG")
        models = [model.id for model in client.models.list()]
    assert models == ["mock", "priced", "noir"]


def test_urls_serve_the_file_to_its_owner_only(server):
    with _client(server) as client:
        result = client.images.generate(
            model="noir", prompt="a street", size="32x32", response_format="url"
        )
    url = result.data[0].url
    mine = httpx.get(url, headers={"Authorization": f"Bearer {ALICE_KEY}"})
    assert mine.status_code == 200
    assert mine.headers["content-type"] == "image/png"
    assert "immutable" in mine.headers["cache-control"]
    theirs = httpx.get(url, headers={"Authorization": f"Bearer {BOB_KEY}"})
    assert theirs.status_code == 404  # not 403: another owner's image looks missing
    assert theirs.json()["error"]["code"] == "not_found"


def test_cost_is_reported_where_known(server):
    response = httpx.post(
        f"{server}/v1/images/generations",
        json={"model": "priced", "prompt": "x", "n": 2, "size": "32x32"},
        headers={"Authorization": f"Bearer {ALICE_KEY}"},
        timeout=30,
    )
    assert response.status_code == 200
    assert response.json()["imagen"]["cost_usd"] == 0.5


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"model": "dall-e-9"}, openai.NotFoundError, "The model 'dall-e-9' does not exist"),
        ({"size": "big"}, openai.BadRequestError, "Invalid size 'big'"),
        ({"n": 9}, openai.BadRequestError, "n must be at most 4"),
    ],
)
def test_bad_requests_raise_the_sdks_usual_errors_and_leave_no_job(
    server, conn, kwargs, error, fragment
):
    with _client(server) as client, pytest.raises(error) as raised:
        client.images.generate(prompt="x", **{"model": "mock", **kwargs})
    assert fragment in str(raised.value)
    assert conn.execute("SELECT count(*) FROM imagen.jobs").fetchone()[0] == 0


def test_keys_are_checked(server):
    with _client(server, "imk_wrong") as client, pytest.raises(openai.AuthenticationError):
        client.images.generate(model="mock", prompt="x")
    bare = httpx.post(f"{server}/v1/images/generations", json={"prompt": "x"})
    assert bare.status_code == 401
    assert bare.json()["error"]["code"] == "missing_api_key"


def test_bodies_that_are_not_json_or_too_big_are_refused(server):
    headers = {"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"}
    broken = httpx.post(f"{server}/v1/images/generations", content=b"{nope", headers=headers)
    assert broken.status_code == 400
    assert broken.json()["error"]["message"] == "We could not parse the JSON body of your request."
    huge = httpx.post(
        f"{server}/v1/images/generations", content=b"x" * (70 * 1024), headers=headers
    )
    assert huge.status_code == 413
    assert huge.json()["error"]["message"] == "the request body is over 65536 bytes"


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _events(server: str, job_id: int, key: str = ALICE_KEY) -> list[tuple[str, dict]]:
    seen = []
    with httpx.stream(
        "GET", f"{server}/v1/jobs/{job_id}/events", headers=_as(key), timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                seen.append((event, json.loads(line.removeprefix("data: "))))
    return seen


def test_the_job_api_submits_follows_and_lists_the_callers_own_jobs(server):
    created = httpx.post(
        f"{server}/v1/jobs",
        json={"prompt": "a harbour", "size": "32x32", "seed": 3, "options": {"delay": 0.3}},
        headers=_as(ALICE_KEY),
    )
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    events = _events(server, job_id)
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done"
    assert "progress" in kinds
    (link,) = events[-1][1]["images"]
    assert httpx.get(link, headers=_as(ALICE_KEY)).content.startswith(b"\x89PNG")
    listed = httpx.get(f"{server}/v1/jobs", params={"limit": 1}, headers=_as(ALICE_KEY)).json()
    assert [job["id"] for job in listed["data"]] == [job_id]
    assert listed["next"] == f"/v1/jobs?limit=1&before={job_id}"
    shown = httpx.get(f"{server}/v1/jobs/{job_id}", headers=_as(ALICE_KEY)).json()
    image = httpx.get(f"{server}/v1/images/{shown['image_id']}", headers=_as(ALICE_KEY)).json()
    assert (image["job_id"], image["seed"], image["width"]) == (job_id, 3, 32)


def test_another_owner_sees_nothing_and_can_cancel_nothing(server):
    job_id = httpx.post(
        f"{server}/v1/jobs", json={"prompt": "mine", "size": "32x32"}, headers=_as(ALICE_KEY)
    ).json()["id"]
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("DELETE", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/events"),
    ]:
        response = httpx.request(method, f"{server}{path}", headers=_as(BOB_KEY))
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["message"] == f"No job {job_id}."
    assert httpx.get(f"{server}/v1/jobs", headers=_as(BOB_KEY)).json()["data"] == []


def test_cancelling_a_running_job(server):
    job_id = httpx.post(
        f"{server}/v1/jobs",
        json={"prompt": "slow", "size": "32x32", "options": {"delay": 30}},
        headers=_as(ALICE_KEY),
    ).json()["id"]
    deadline = time.monotonic() + 20
    while (
        httpx.get(f"{server}/v1/jobs/{job_id}", headers=_as(ALICE_KEY)).json()["status"]
        != "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelled = httpx.delete(f"{server}/v1/jobs/{job_id}", headers=_as(ALICE_KEY))
    assert cancelled.json() == {"id": job_id, "cancel_requested": True, "status": "running"}
    assert _events(server, job_id)[-1][0] == "cancelled"
    again = httpx.delete(f"{server}/v1/jobs/{job_id}", headers=_as(ALICE_KEY))
    assert again.status_code == 409


def _token(sub: str, expires_in: float, secret: str = JWT_SECRET) -> str:
    now = int(time.time())
    claims = {"sub": sub, "role": "authenticated", "aud": "authenticated", "iat": now,
              "exp": now + int(expires_in)}  # fmt: skip
    return jwt.encode(claims, secret, algorithm="HS256")


def test_supabase_style_jwts_act_for_their_subject(server):
    carol = _token("carol", 600)
    created = httpx.post(f"{server}/v1/jobs", json={"prompt": "x"}, headers=_as(carol))
    assert created.status_code == 201
    listed = httpx.get(f"{server}/v1/jobs", headers=_as(carol)).json()["data"]
    assert [job["id"] for job in listed] == [created.json()["id"]]
    expired = httpx.get(f"{server}/v1/jobs", headers=_as(_token("carol", -10)))
    assert (expired.status_code, expired.json()["error"]["code"]) == (401, "token_expired")
    forged = httpx.get(
        f"{server}/v1/jobs",
        headers=_as(_token("carol", 600, "another-secret-of-32-bytes-or-more!!")),
    )
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "invalid_token")
    assert JWT_SECRET not in forged.text


def _png_pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as picture:
        return picture.convert("RGB").tobytes()


def test_images_are_listed_with_thumbnails_and_made_again_from_their_facts(server):
    first = httpx.post(
        f"{server}/v1/jobs",
        json={"prompt": "a harbour", "size": "640x400", "seed": 11, "style": "noir", "count": 2},
        headers=_as(ALICE_KEY),
    ).json()["id"]
    assert _events(server, first)[-1][0] == "done"
    listed = httpx.get(f"{server}/v1/images", params={"limit": 1}, headers=_as(ALICE_KEY)).json()
    (newest,) = listed["data"]
    assert newest["job_id"] == first
    assert listed["next"] == f"/v1/images?limit=1&before={newest['id']}"
    older = httpx.get(f"{server}{listed['next']}", headers=_as(ALICE_KEY)).json()["data"]
    assert [image["id"] for image in older] == [newest["id"] - 1]

    thumb = httpx.get(newest["thumbnail"], headers=_as(ALICE_KEY))
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(thumb.content)) as picture:
        assert picture.format == "WEBP"
        assert picture.size == (384, 240)  # the aspect ratio kept, at most 384 a side
    assert httpx.get(newest["thumbnail"], headers=_as(BOB_KEY)).status_code == 404

    facts = httpx.get(f"{server}/v1/images/{newest['id']}", headers=_as(ALICE_KEY)).json()
    assert facts["metadata"]["model"] == "imagen-mock"  # the backend's own map, verbatim
    assert (facts["metadata"]["width"], facts["metadata"]["height"]) == (640, 400)
    request = facts["request"]
    assert request["prompt"] == "a harbour"
    assert (request["style"], request["size"], request["count"]) == ("noir", "640x400", 1)
    assert request["seed"] == newest["seed"]
    assert "local_path" not in facts  # the server's own paths stay on the server

    again = httpx.post(f"{server}/v1/jobs", json=request, headers=_as(ALICE_KEY)).json()["id"]
    done = _events(server, again)[-1]
    assert done[0] == "done"
    (remade,) = done[1]["image_ids"]
    original = httpx.get(newest["file"], headers=_as(ALICE_KEY)).content
    replayed = httpx.get(f"{server}/v1/images/{remade}/file", headers=_as(ALICE_KEY)).content
    assert _png_pixels(replayed) == _png_pixels(original)  # the built-in backend is reproducible


def test_the_job_list_filters_by_status(server):
    quick = httpx.post(f"{server}/v1/jobs", json={"prompt": "quick"}, headers=_as(ALICE_KEY))
    assert _events(server, quick.json()["id"])[-1][0] == "done"
    slow = httpx.post(
        f"{server}/v1/jobs",
        json={"prompt": "slow", "options": {"delay": 30}},
        headers=_as(ALICE_KEY),
    ).json()["id"]
    unfinished = httpx.get(
        f"{server}/v1/jobs?status=pending&status=running", headers=_as(ALICE_KEY)
    ).json()["data"]
    assert [job["id"] for job in unfinished] == [slow]
    done = httpx.get(f"{server}/v1/jobs?status=done", headers=_as(ALICE_KEY)).json()["data"]
    assert [job["id"] for job in done] == [quick.json()["id"]]
    httpx.delete(f"{server}/v1/jobs/{slow}", headers=_as(ALICE_KEY))
    bad = httpx.get(f"{server}/v1/jobs?status=asleep", headers=_as(ALICE_KEY))
    assert bad.status_code == 400


def test_a_generation_that_outlives_the_wait_answers_with_a_job_reference(db_url, tmp_path):
    config = parse_config(
        Located({"output": {"directory": str(tmp_path)}, "backends": {"mock": {"type": "mock"}}})
    )
    settings = ServeSettings(api_keys={hash_key(ALICE_KEY): "alice"}, wait_s=0.3)
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbs")
    with serving(app) as url, running(config, db_url):
        # One worker slot, taken for 2 s: the generation queues behind it.
        httpx.post(
            f"{url}/v1/jobs",
            json={"prompt": "busy", "options": {"delay": 2}},
            headers=_as(ALICE_KEY),
        )
        response = httpx.post(
            f"{url}/v1/images/generations",
            json={"prompt": "slow", "quality": "high", "size": "32x32"},
            headers=_as(ALICE_KEY),
        )
        assert response.status_code == 202
        reference = response.json()["imagen"]
        assert reference["poll"] == f"/v1/jobs/{reference['job']}"
        # Not failed: the job carries on, and ends like any other.
        assert _events(url, reference["job"])[-1][0] == "done"


def test_a_spending_cap_answers_429_before_any_image_is_made(db_url, tmp_path):
    config = parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path)},
                "backends": {"priced": {"type": "mock", "price_per_image_usd": 0.25}},
                "usage": {"budget": {"per_owner": {"daily_usd": 0.3}}},
            }
        )
    )
    settings = ServeSettings(api_keys={hash_key(ALICE_KEY): "alice", hash_key(BOB_KEY): "bob"})
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbs")
    with serving(app) as url, running(config, db_url):
        with _client(url) as alice:
            alice.images.generate(prompt="one", size="32x32")
            with pytest.raises(openai.RateLimitError) as refused:
                alice.images.generate(prompt="two", size="32x32")
            assert "refused before calling the backend" in str(refused.value)
        with _client(url, BOB_KEY) as bob:  # each owner has a cap of their own
            assert len(bob.images.generate(prompt="three", size="32x32").data) == 1


def test_the_session_cookie_signs_the_gallery_in_and_refuses_cross_site_writes(server):
    with httpx.Client(base_url=server) as browser:
        wrong = browser.post("/v1/session", json={"token": "imk_wrong"})
        assert wrong.status_code == 401
        signed = browser.post("/v1/session", json={"token": ALICE_KEY})
        assert signed.json() == {"owner": "alice"}
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert browser.get("/v1/session").json() == {"owner": "alice"}
        mine = browser.post("/v1/jobs", json={"prompt": "x"}, headers={"Origin": server})
        assert mine.status_code == 201
        forged = browser.post(
            "/v1/jobs", json={"prompt": "x"}, headers={"Origin": "https://evil.example"}
        )
        assert forged.status_code == 403
        assert forged.json()["error"]["code"] == "forbidden"
        assert browser.delete("/v1/session").status_code == 204
        assert browser.get("/v1/session").status_code == 401


def test_a_valid_token_for_no_user_is_forbidden(server):
    now = int(time.time())
    anon = jwt.encode({"role": "anon", "iat": now, "exp": now + 600}, JWT_SECRET, "HS256")
    response = httpx.get(f"{server}/v1/jobs", headers=_as(anon))
    assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")


def test_a_chunked_body_over_the_limit_is_refused(server):
    def chunks():
        for _ in range(100):
            yield b" " * 1024

    response = httpx.post(
        f"{server}/v1/jobs",
        content=chunks(),
        headers={**_as(ALICE_KEY), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["message"] == "the request body is over 65536 bytes"


def test_the_gallery_page_is_served_with_its_assets_and_a_strict_policy(server):
    page = httpx.get(server)
    assert page.status_code == 200
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("gallery.js", "gallery.css", "icon.svg"):
        assert f"/static/{asset}?v=" in page.text
        assert httpx.get(f"{server}/static/{asset}").status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "a\x00b"}, "prompt"),
        ({"prompt": "x", "options": {"note": "a\x00b"}}, "options.note"),
        ({"prompt": "x", "size": "99999999999x8"}, "size"),
        ({"prompt": "x", "size": "0x8"}, "size"),
        ({"prompt": "x", "backend": "nope"}, "backend"),
        ({"prompt": "x", "count": 5}, "count"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": " \r\n"}, "prompt"),
    ],
)
def test_impossible_jobs_are_refused_with_the_field_named_and_leave_no_job(
    server, conn, body, param
):
    response = httpx.post(f"{server}/v1/jobs", json=body, headers=_as(ALICE_KEY))
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == param
    assert conn.execute("SELECT count(*) FROM imagen.jobs").fetchone()[0] == 0


def test_the_openai_backend_behind_serve_passes_its_usage_and_cost_through(
    db_url, tmp_path, monkeypatch
):
    """SDK → imagen serve → queue → worker → imagen-openai → a loopback OpenAI, end to end."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "imagen_openai"))
    from openai_standin import KEY, OpenAIStandIn

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with OpenAIStandIn() as upstream:
        config = parse_config(
            Located(
                {
                    "output": {"directory": str(tmp_path / "out")},
                    "backends": {
                        "gpt": {
                            "type": "openai",
                            "model": "gpt-image-1.5",
                            "base_url": upstream.api,
                        }
                    },
                }
            )
        )
        settings = ServeSettings(api_keys={hash_key(ALICE_KEY): "alice"})
        app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbs")
        with serving(app) as url, running(config, db_url), _client(url) as client:
            result = client.images.generate(
                model="gpt", prompt="a lighthouse", n=2, size="1024x1024", quality="low"
            )
            raw = client.images.with_raw_response.generate(
                model="gpt", prompt="a lighthouse", size="1024x1024", quality="low"
            ).http_response.json()
    assert len(result.data) == 2
    assert result.usage is not None
    assert result.usage.output_tokens == 2 * 272  # low quality at 1024x1024: 272 an image
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    assert raw["imagen"]["cost_usd"] > 0  # priced from those tokens
    assert KEY not in json.dumps(raw)


def test_the_openai_backend_generates_with_another_compatible_servers_models(
    db_url, tmp_path, home
):
    """Issue 15: ``model: mock`` at a compatible server's base_url was an unknown image model.

    The compatible server is a real one: another imagen serve, whose models are its backends.
    """
    config = parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "studio")},
                "backends": {"mock": {"type": "mock"}},
            }
        )
    )
    settings = ServeSettings(api_keys={hash_key(ALICE_KEY): "alice"})
    app = create_app(config, db_url, settings, thumbnails=tmp_path / "thumbs")
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-openai"
    home.env["STUDIO_KEY"] = ALICE_KEY
    with serving(app) as url, running(config, db_url):
        for model in ("mock", "nosuch"):
            home.write_config(
                f"""
                output:
                  directory: {home.root / "out"}
                backends:
                  studio:
                    type: openai
                    base_url: {url}/v1
                    model: {model}
                    api_key_env: STUDIO_KEY
                """,
                name=f"{model}.yaml",
            )
        made = home.run("--config", "mock.yaml", "generate", "a lighthouse", "--size", "48x32")
        missing = home.run("--config", "nosuch.yaml", "generate", "a lighthouse")
    assert made.returncode == 0, made.stderr
    (path,) = made.stdout.split()
    with Image.open(path) as picture:
        assert picture.size == (48, 32)  # the size as asked, not OpenAI's three
    record = json.loads(Path(path).with_suffix(".json").read_text())
    assert record["metadata"]["model"] == "mock"
    assert missing.returncode == 4
    assert "The model 'nosuch' does not exist" in missing.stderr
    home.write_config("backends:\n  gpt:\n    type: openai\n    model: mock\n")
    home.env["OPENAI_API_KEY"] = "sk-test"
    refused = home.run("config", "check")  # OpenAI itself has no such model
    assert refused.returncode == 3
    assert "unknown image model 'mock'" in refused.stderr + refused.stdout
    assert "another server's model needs its base_url" in refused.stderr + refused.stdout
