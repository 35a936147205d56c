"""The worker's path to the cloud: job → image file → storage object → images row → usage row."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg.rows import dict_row
from worker_helpers import running, submit, wait_for

from imagen.config import parse_config
from imagen.yamlfile import Located

sys.path.insert(0, str(Path(__file__).parents[1] / "imagen_core"))

from supabase_standin import SupabaseStandIn

KEY = "service-role-key-for-worker-tests-42"


@pytest.fixture
def supabase(monkeypatch) -> Iterator[SupabaseStandIn]:
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", KEY)
    with SupabaseStandIn(KEY) as server:
        yield server


def _config(tmp_path: Path, url: str):
    return parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out")},
                "cloud": {
                    "url": url,
                    "bucket": "images",
                    "path": "{owner}/{seed}.{ext}",
                    "retry_attempts": 1,
                },
            }
        )
    )


def _rows(conn, query: str) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query).fetchall()


def test_a_job_ends_with_its_object_images_row_and_usage_row(conn, db_url, tmp_path, supabase):
    with running(_config(tmp_path, supabase.url), db_url):
        job_id = submit(conn, "a lighthouse", width=32, height=32, seed=9)
        row = wait_for(conn, job_id, ("done",))
    assert list(supabase.objects) == [("images", "alice/9.png")]
    (image,) = _rows(conn, "SELECT * FROM imagen.images")
    assert (image["id"], image["job_id"], image["owner"]) == (row["image_id"], job_id, "alice")
    assert image["storage_location"] == "alice/9.png"
    assert Path(image["local_path"]).read_bytes() == supabase.objects[("images", "alice/9.png")][0]
    assert supabase.rows == []  # the worker records images itself, in the job's transaction
    (usage,) = _rows(conn, "SELECT * FROM mai.imagen_usage")
    assert (usage["job_id"], usage["status"], usage["images"]) == (job_id, "done", 1)


def test_an_outage_retries_the_upload_without_generating_again(conn, db_url, tmp_path, supabase):
    supabase.outage = True
    config = _config(tmp_path, supabase.url)
    with running(config, db_url, retry_base_s=0.3):
        job_id = submit(conn, "a storm", width=32, height=32, seed=4)
        wait_for(conn, job_id, ("running",))
        pending = wait_for(conn, job_id, ("pending",))  # back, to be retried
        assert pending["error"].startswith("cloud sync failed")  # the first attempt, or later
        assert "on disk" in pending["error"]
        assert KEY not in pending["error"]
        (kept,) = pending["progress"]["saved"]
        first_bytes = Path(kept).read_bytes()
        supabase.outage = False
        row = wait_for(conn, job_id, ("done",))
    assert row["attempts"] >= 2
    assert supabase.objects[("images", "alice/4.png")][0] == first_bytes  # the same file
    assert len(list((tmp_path / "out").rglob("*.png"))) == 1
    (usage,) = _rows(conn, "SELECT * FROM mai.imagen_usage")  # generated once, counted once
    assert usage["status"] == "done"
    (image,) = _rows(conn, "SELECT * FROM imagen.images")
    assert image["storage_location"] == "alice/4.png"
