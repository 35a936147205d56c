"""The gallery's image routes: delete (row, file and copies), search by prompt, download."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from worker_helpers import job, running, serving

from imagen.config import parse_config
from imagen.metadata.reader import sidecar_path
from imagen.yamlfile import Located
from imagen_worker.serve.app import create_app
from imagen_worker.serve.images_api import search_words
from imagen_worker.serve.settings import ServeSettings, hash_key

ALICE_KEY = "imk_alice-images-key"
BOB_KEY = "imk_bob-images-key"


class Server:
    url: str
    out: Path
    thumbnails: Path


@pytest.fixture
def server(db_url, tmp_path) -> Iterator[Server]:
    config = parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out")},
                "backends": {"mock": {"type": "mock", "price_per_image_usd": 0.25}},
            }
        )
    )
    settings = ServeSettings(api_keys={hash_key(ALICE_KEY): "alice", hash_key(BOB_KEY): "bob"})
    served = Server()
    served.out, served.thumbnails = tmp_path / "out", tmp_path / "thumbnails"
    app = create_app(config, db_url, settings, thumbnails=served.thumbnails)
    with serving(app) as url, running(config, db_url):
        served.url = url
        yield served


def _as(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _generate(server: Server, prompt: str, n: int = 1) -> dict:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=ALICE_KEY, max_retries=0) as client:
        made = client.images.with_raw_response.generate(
            model="mock", prompt=prompt, n=n, size="32x32", response_format="url"
        )
    return json.loads(made.text)


def _cached(server: Server) -> list[Path]:
    return sorted(p for p in server.thumbnails.rglob("*") if p.is_file())


# -- delete ------------------------------------------------------------------------------------


def test_an_owner_deletes_an_image_with_its_file_sidecar_and_copies(server, conn):
    made = _generate(server, "a pair of foxes", n=2)
    job_id, (first, second) = made["imagen"]["job"], made["imagen"]["images"]
    paths = {
        image_id: Path(path)
        for image_id, path in conn.execute(
            "SELECT id, local_path FROM imagen.images WHERE job_id = %s", (job_id,)
        )
    }
    for image_id in (first, second):  # copies: a thumbnail, another format
        for route in ("thumbnail", "file?format=webp"):
            got = httpx.get(f"{server.url}/v1/images/{image_id}/{route}", headers=_as(ALICE_KEY))
            assert got.status_code == 200
    assert len(_cached(server)) == 4
    assert sidecar_path(paths[first]).is_file()

    theirs = httpx.delete(f"{server.url}/v1/images/{first}", headers=_as(BOB_KEY))
    assert theirs.status_code == 404  # another owner's image looks missing, and stays
    assert paths[first].is_file()

    deleted = httpx.delete(f"{server.url}/v1/images/{first}", headers=_as(ALICE_KEY))
    assert deleted.json() == {"id": first, "object": "image", "deleted": True, "file_removed": True}
    assert not paths[first].exists()
    assert not sidecar_path(paths[first]).exists()
    assert len(_cached(server)) == 2  # the other image's copies stay
    assert httpx.get(f"{server.url}/v1/images/{first}", headers=_as(ALICE_KEY)).status_code == 404
    again = httpx.delete(f"{server.url}/v1/images/{first}", headers=_as(ALICE_KEY))
    assert again.status_code == 404

    # The job stays done; its image link named the deleted image and is cleared; the other
    # image keeps its share of the run's cost.
    shown = httpx.get(f"{server.url}/v1/jobs/{job_id}", headers=_as(ALICE_KEY)).json()
    assert (shown["status"], shown["image_id"]) == ("done", None)
    (left,) = httpx.get(
        f"{server.url}/v1/images", params={"job": job_id}, headers=_as(ALICE_KEY)
    ).json()["data"]
    assert (left["id"], left["cost_usd"]) == (second, 0.25)

    # All its images deleted: the job is still there, done, with none.
    assert httpx.delete(f"{server.url}/v1/images/{second}", headers=_as(ALICE_KEY)).json()[
        "file_removed"
    ]
    listed = httpx.get(f"{server.url}/v1/images", params={"job": job_id}, headers=_as(ALICE_KEY))
    assert listed.json()["data"] == []
    assert job(conn, job_id)["status"] == "done"
    assert _cached(server) == []
    assert list(server.out.rglob("*.*")) == []


def test_a_row_naming_a_file_elsewhere_or_shared_never_deletes_it(server, conn, tmp_path):
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"\x89PNG not imagen's")
    inside = server.out / "shared.png"
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.write_bytes(b"\x89PNG two rows name it")
    rows = [
        conn.execute(
            "INSERT INTO imagen.images (owner, prompt, backend, mime_type, local_path) "
            "VALUES ('alice', 'x', 'mock', 'image/png', %s) RETURNING id",
            (str(path),),
        ).fetchone()[0]
        for path in (precious, tmp_path / "out" / ".." / "precious.png", inside, inside)
    ]
    for image_id in rows[:3]:
        answer = httpx.delete(f"{server.url}/v1/images/{image_id}", headers=_as(ALICE_KEY))
        assert answer.json() == {
            "id": image_id,
            "object": "image",
            "deleted": True,
            "file_removed": False,
        }
    assert precious.read_bytes() == b"\x89PNG not imagen's"
    assert inside.is_file()  # another row still names it
    last = httpx.delete(f"{server.url}/v1/images/{rows[3]}", headers=_as(ALICE_KEY))
    assert last.json()["file_removed"] is True
    assert not inside.exists()


# -- search ------------------------------------------------------------------------------------


def _image(conn, owner: str, prompt: str) -> int:
    return conn.execute(
        "INSERT INTO imagen.images (owner, prompt, backend, mime_type) "
        "VALUES (%s, %s, 'mock', 'image/png') RETURNING id",
        (owner, prompt),
    ).fetchone()[0]


def _search(server: Server, q: str, key: str = ALICE_KEY, **params) -> httpx.Response:
    return httpx.get(
        f"{server.url}/v1/images", params={"q": q, **params}, headers=_as(key), timeout=30
    )


def test_search_finds_the_callers_images_by_words_and_word_beginnings(server, conn):
    dusk = _image(conn, "alice", "A lighthouse at dusk, Sci-Fi style")
    noon = _image(conn, "alice", "a lighthouse at noon")
    cafe = _image(conn, "alice", "Café de Flore, 日本語 のプロンプト")
    bobs = _image(conn, "bob", "a lighthouse at dusk")
    found = {
        q: [image["id"] for image in _search(server, q).json()["data"]]
        for q in (
            "lighthouse",
            "LIGHT",
            "dusk lighthouse",
            "sci fi",
            "flo",
            "CAFÉ",
            "日本語",
            "lighthouse, café",
            "house",
            "",
        )
    }
    assert found == {
        "lighthouse": [noon, dusk],
        "LIGHT": [noon, dusk],
        "dusk lighthouse": [dusk],
        "sci fi": [dusk],
        "flo": [cafe],
        "CAFÉ": [cafe],
        "日本語": [cafe],
        "lighthouse, café": [],
        "house": [],  # words and their beginnings, not any substring
        "": [cafe, noon, dusk],  # nothing to search for: every image
    }
    assert [i["id"] for i in _search(server, "lighthouse", BOB_KEY).json()["data"]] == [bobs]
    page = _search(server, "lighthouse", limit=1).json()
    assert page["next"] == f"/v1/images?limit=1&before={noon}&q=lighthouse"
    rest = httpx.get(f"{server.url}{page['next']}", headers=_as(ALICE_KEY)).json()
    assert [i["id"] for i in rest["data"]] == [dusk]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(q=st.text(max_size=60))
def test_whatever_is_typed_is_searched_for_and_never_fails(server, q):
    answer = _search(server, q)
    assert answer.status_code == 200, answer.text
    words = search_words(q)
    assert words is None or re.fullmatch(r"[^\W_]+:\*( & [^\W_]+:\*)*", words)


def test_the_search_function_can_use_its_index_where_a_policy_could_not(conn):
    """Text search is not leakproof: under row-level security no index serves it."""
    conn.execute(
        "INSERT INTO imagen.images (owner, prompt, backend, mime_type) "
        "SELECT CASE WHEN n % 2 = 0 THEN 'alice' ELSE 'bob' END, "
        "       CASE WHEN n % 500 = 0 THEN 'a lighthouse ' ELSE 'a meadow ' END || n, "
        "       'mock', 'image/png' FROM generate_series(1, 5000) AS n"
    )
    conn.execute("ANALYZE imagen.images")
    body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'search_images'").fetchone()[0]
    for name, number in (("query", 1), ("before", 2), ("job", 3), ("n", 4)):
        body = re.sub(rf"\b{name}\b", f"${number}", body)
    conn.execute("SELECT set_config('request.jwt.claims', '{\"sub\": \"alice\"}', false)")
    conn.execute(f"PREPARE searching (tsquery, bigint, bigint, integer) AS {body}")
    plan = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN EXECUTE searching (to_tsquery('simple', 'lighth:*'), NULL, NULL, 24)"
        )
    )
    assert "images_prompt_words" in plan
    conn.execute("SET ROLE authenticated")
    under_policy = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN SELECT * FROM imagen.images "
            "WHERE to_tsvector('simple', prompt) @@ to_tsquery('simple', 'lighth:*')"
        )
    )
    assert "images_prompt_words" not in under_policy
    conn.execute("RESET ROLE")


def test_search_words_build_a_query_from_letters_and_digits_only():
    assert search_words("a Lighthouse!") == "a:* & lighthouse:*"
    assert search_words("') | !x:* & (") == "x:*"
    assert search_words("snake_case 42") == "snake:* & case:* & 42:*"
    assert search_words("... ---") is None
    assert search_words(" ".join(f"w{n}" for n in range(40))).count(":*") == 16


# -- download ----------------------------------------------------------------------------------


def test_download_names_the_file_as_it_is_on_disk(server, conn):
    made = _generate(server, "a fox at dawn")
    (image_id,) = made["imagen"]["images"]
    path = Path(
        conn.execute("SELECT local_path FROM imagen.images WHERE id = %s", (image_id,)).fetchone()[
            0
        ]
    )
    got = httpx.get(
        f"{server.url}/v1/images/{image_id}/file",
        params={"download": "true"},
        headers=_as(ALICE_KEY),
    )
    assert got.headers["content-disposition"] == f'attachment; filename="{path.name}"'
    assert got.content == path.read_bytes()
    webp = httpx.get(
        f"{server.url}/v1/images/{image_id}/file",
        params={"download": "true", "format": "webp"},
        headers=_as(ALICE_KEY),
    )
    assert webp.headers["content-disposition"] == (
        f'attachment; filename="{path.with_suffix(".webp").name}"'
    )
    inline = httpx.get(f"{server.url}/v1/images/{image_id}/file", headers=_as(ALICE_KEY))
    assert "content-disposition" not in inline.headers


def test_the_web_role_deletes_only_its_own_images_and_the_job_keeps_its_row(conn):
    """The database's own rule, whatever path the delete takes (PostgREST, imagen serve)."""
    mine, theirs = _image(conn, "alice", "mine"), _image(conn, "bob", "theirs")
    job_id = conn.execute(
        "INSERT INTO imagen.jobs (owner, prompt) VALUES ('alice', 'mine') RETURNING id"
    ).fetchone()[0]
    conn.execute("UPDATE imagen.jobs SET status = 'running' WHERE id = %s", (job_id,))
    conn.execute(
        "UPDATE imagen.jobs SET status = 'done', image_id = %s WHERE id = %s", (mine, job_id)
    )
    conn.execute("UPDATE imagen.images SET job_id = %s WHERE id = %s", (job_id, mine))
    conn.execute("SELECT set_config('request.jwt.claims', '{\"sub\": \"alice\"}', false)")
    conn.execute("SET ROLE authenticated")
    deleted = conn.execute("DELETE FROM imagen.images RETURNING id").fetchall()
    assert deleted == [(mine,)]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM imagen.jobs")
    conn.execute("RESET ROLE")
    assert conn.execute("SELECT id FROM imagen.images").fetchall() == [(theirs,)]
    assert (job(conn, job_id)["status"], job(conn, job_id)["image_id"]) == ("done", None)
