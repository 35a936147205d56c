"""The worker's path to the cloud: job → image file → storage object → images row → usage row.

Against a loopback Supabase project (supabase_stack): the worker works its queue in the
project's own database, and uploads through the Storage stand-in with the service key.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row
from supabase_stack import BUCKET, SupabaseProject
from worker_helpers import running, submit, wait_for

from imagen.config import parse_config
from imagen.yamlfile import Located
from imagen_worker import queries


@pytest.fixture
def project(supabase_project, monkeypatch) -> SupabaseProject:
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", supabase_project.service_key)
    return supabase_project


@pytest.fixture
def conn(project):
    with psycopg.connect(project.db_url, autocommit=True) as connection:
        yield connection


def _config(tmp_path: Path, url: str):
    return parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out")},
                "cloud": {
                    "url": url,
                    "bucket": BUCKET,
                    "path": "{owner}/{seed}.{ext}",
                    "retry_attempts": 1,
                },
            }
        )
    )


def _rows(conn, query: str) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(query).fetchall()


def test_a_job_ends_with_its_object_images_row_and_usage_row(conn, project, tmp_path):
    storage = project.storage
    with running(_config(tmp_path, project.url), project.db_url):
        job_id = submit(conn, "a lighthouse", width=32, height=32, seed=9)
        row = wait_for(conn, job_id, ("done",))
    assert list(storage.objects) == [("images", "alice/9.png")]
    assert [upload["role"] for upload in storage.uploads] == ["service_role"]
    (image,) = _rows(conn, "SELECT * FROM imagen.images")
    assert (image["id"], image["job_id"], image["owner"]) == (row["image_id"], job_id, "alice")
    assert (image["storage_bucket"], image["storage_location"]) == ("images", "alice/9.png")
    local = Path(image["local_path"])
    assert local.read_bytes() == storage.objects[("images", "alice/9.png")][0]
    sidecar = json.loads(local.with_suffix(".json").read_text())
    assert sidecar["job"] == {"id": job_id, "owner": "alice"}  # for any later sync
    assert sidecar["cloud"]["path"] == "alice/9.png"
    (usage,) = _rows(conn, "SELECT * FROM mai.imagen_usage")
    assert (usage["job_id"], usage["status"], usage["images"]) == (job_id, "done", 1)


def test_an_outage_retries_the_upload_without_generating_again(conn, project, tmp_path):
    storage = project.storage
    storage.outage = True
    config = _config(tmp_path, project.url)
    with running(config, project.db_url, retry_base_s=0.3):
        job_id = submit(conn, "a storm", width=32, height=32, seed=4)
        wait_for(conn, job_id, ("running",))
        pending = wait_for(conn, job_id, ("pending",))  # back, to be retried
        assert pending["error"].startswith("cloud sync failed")  # the first attempt, or later
        assert "the images are kept" in pending["error"]
        assert project.service_key not in pending["error"]
        assert str(tmp_path) not in pending["error"]  # its owner reads it: no worker paths
        (kept,) = pending["progress"]["saved"]
        first_bytes = Path(kept).read_bytes()
        storage.outage = False
        row = wait_for(conn, job_id, ("done",))
    assert row["attempts"] >= 2
    assert storage.objects[("images", "alice/4.png")][0] == first_bytes  # the same file
    assert len(list((tmp_path / "out").rglob("*.png"))) == 1
    (usage,) = _rows(conn, "SELECT * FROM mai.imagen_usage")  # generated once, counted once
    assert usage["status"] == "done"
    (image,) = _rows(conn, "SELECT * FROM imagen.images")
    assert (image["storage_bucket"], image["storage_location"]) == ("images", "alice/4.png")


def test_a_job_that_gave_up_on_the_cloud_is_finished_by_a_retry(conn, project, tmp_path):
    """The remedy the job's row gives: ``imagen jobs retry`` uploads what it kept."""
    project.storage.outage = True
    config = _config(tmp_path, project.url)
    with running(config, project.db_url, retry_base_s=0.1):
        job_id = submit(conn, "a gale", width=32, height=32, seed=6, max_attempts=1)
        failed = wait_for(conn, job_id, ("failed",))
    assert "imagen jobs retry ID" in failed["error"]
    project.storage.outage = False
    with running(config, project.db_url):
        requeued = conn.execute(queries.REQUEUE, (job_id,)).fetchone()  # imagen jobs retry
        assert requeued[0] == job_id
        wait_for(conn, job_id, ("done",))
    (image,) = _rows(conn, "SELECT * FROM imagen.images")
    assert (image["owner"], image["storage_location"]) == ("alice", "alice/6.png")
    assert len(list((tmp_path / "out").rglob("*.png"))) == 1  # not generated again
