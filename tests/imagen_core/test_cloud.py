"""Cloud sync through the real supabase-py, against a loopback Supabase project.

The project is real PostgreSQL (with Supabase's roles, migrated by imagen-worker) behind the
real PostgREST 12, and the Storage stand-in answering per role from the same database.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row
from supabase_stack import BUCKET, SupabaseProject, token


def _cloud_config(home, project: SupabaseProject, extra: str = "") -> None:
    home.env["SUPABASE_SERVICE_ROLE_KEY"] = project.service_key
    home.write_config(
        f"""
        output:
          directory: {home.root / "out"}
        cloud:
          url: {project.url}
          bucket: {BUCKET}
          path: "{{owner}}/{{date:%Y}}/{{slug}}-{{seed}}-{{index}}.{{ext}}"
          retry_attempts: 1
        """
        + extra
    )


@pytest.fixture
def cloud_home(home, supabase_project):
    _cloud_config(home, supabase_project)
    return home


def _generate(home, *args: str):
    return home.run("generate", "a red fox", "--size", "32x32", "--seed", "5", "--json", *args)


def _rows(project: SupabaseProject) -> list[dict]:
    with psycopg.connect(project.db_url, row_factory=dict_row) as conn:
        return conn.execute("SELECT * FROM imagen.images ORDER BY id").fetchall()


def test_each_image_is_uploaded_recorded_and_noted_in_its_sidecar(cloud_home, supabase_project):
    storage = supabase_project.storage
    proc = _generate(cloud_home, "-n", "2")
    assert proc.returncode == 0, proc.stderr
    images = json.loads(proc.stdout)["images"]
    year = json.loads(Path(images[0]["sidecar"]).read_text())["created"][:4]
    assert sorted(storage.objects) == [
        ("images", f"local/{year}/a-red-fox-5-1.png"),
        ("images", f"local/{year}/a-red-fox-6-2.png"),
    ]
    for image in images:
        record = json.loads(Path(image["sidecar"]).read_text())
        cloud = record["cloud"]
        data, mime_type = storage.objects[(cloud["bucket"], cloud["path"])]
        assert data == Path(image["path"]).read_bytes()
        assert mime_type == "image/png"
        with urllib.request.urlopen(cloud["url"]) as response:  # signed: no credentials
            assert response.read() == data
    assert [(u["upsert"], u["role"]) for u in storage.uploads] == [("false", "service_role")] * 2
    rows = _rows(supabase_project)
    assert [(r["owner"], r["storage_bucket"], r["storage_location"], r["seed"]) for r in rows] == [
        ("local", "images", f"local/{year}/a-red-fox-5-1.png", 5),
        ("local", "images", f"local/{year}/a-red-fox-6-2.png", 6),
    ]
    assert rows[0]["local_path"] == str(Path(images[0]["path"]).resolve())
    assert supabase_project.service_key not in Path(images[0]["sidecar"]).read_text()


def test_an_object_with_the_same_bytes_counts_as_synced_and_different_bytes_are_kept(
    cloud_home, supabase_project
):
    storage = supabase_project.storage
    first = json.loads(_generate(cloud_home).stdout)["images"][0]
    sidecar = Path(first["sidecar"])
    record = json.loads(sidecar.read_text())
    cloud = record.pop("cloud")
    sidecar.write_text(json.dumps(record))  # as if it stopped between upload and sidecar
    retried = cloud_home.run("cloud", "sync")
    assert retried.returncode == 0, retried.stderr
    assert "0 uploaded, 0 failed, 1 already uploaded" in retried.stdout
    assert json.loads(sidecar.read_text())["cloud"]["path"] == cloud["path"]
    assert len(_rows(supabase_project)) == 1  # recorded once, by the first run

    clash = _generate(cloud_home)  # same name; new bytes (its metadata has a new time)
    assert clash.returncode == 6
    assert "already holds a different file; not overwritten" in clash.stderr
    assert storage.objects[("images", cloud["path"])][0] == Path(first["path"]).read_bytes()


def test_an_outage_keeps_the_image_and_cloud_sync_catches_up(cloud_home, supabase_project):
    storage = supabase_project.storage
    storage.outage = True
    failed = _generate(cloud_home, "-n", "2")
    assert failed.returncode == 6
    saved = json.loads(failed.stdout)["images"]
    assert all(Path(image["path"]).is_file() for image in saved)
    assert "the image stays at" in failed.stderr
    assert "imagen cloud sync" in failed.stderr
    assert supabase_project.service_key not in failed.stderr
    assert storage.objects == {}

    still_down = cloud_home.run("cloud", "sync")
    assert still_down.returncode == 6
    assert "0 uploaded, 2 failed" in still_down.stdout

    storage.outage = False
    synced = cloud_home.run("cloud", "sync")
    assert synced.returncode == 0, synced.stderr
    assert "2 uploaded, 0 failed" in synced.stdout
    for image in saved:
        cloud = json.loads(Path(image["sidecar"]).read_text())["cloud"]
        data = storage.objects[("images", cloud["path"])][0]
        assert (
            hashlib.sha256(data).digest()
            == hashlib.sha256(Path(image["path"]).read_bytes()).digest()
        )
    assert len(_rows(supabase_project)) == 2
    nothing_left = cloud_home.run("cloud", "sync")
    assert "0 uploaded, 0 failed" in nothing_left.stdout
    assert len(storage.uploads) == 2  # the outage's attempts never reached storage


def test_overlapping_syncs_upload_and_record_each_image_once(home, supabase_project):
    """Issue 12, failure 3: three syncs started together gave 24 rows for 8 objects."""
    _cloud_config(home, supabase_project, "  enabled: false\n")
    made = _generate(home, "-n", "8")
    assert made.returncode == 0, made.stderr
    _cloud_config(home, supabase_project)
    command = [sys.executable, "-m", "imagen", "cloud", "sync", "--json"]
    runs = [
        subprocess.Popen(command, cwd=home.cwd, env=home.env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outcomes = [json.loads(line) for run in runs for line in run.communicate()[0].splitlines()]
    assert [run.returncode for run in runs] == [0, 0, 0]
    statuses = [outcome["status"] for outcome in outcomes]
    assert statuses.count("uploaded") == 8, statuses
    assert set(statuses) <= {"uploaded", "already uploaded", "busy"}
    assert len(supabase_project.storage.objects) == 8
    rows = _rows(supabase_project)
    assert len(rows) == 8
    assert len({(r["storage_bucket"], r["storage_location"]) for r in rows}) == 8
    for sidecar in (home.root / "out").rglob("*.json"):
        assert json.loads(sidecar.read_text())["cloud"]["bucket"] == "images"
    again = home.run("cloud", "sync")
    assert again.stdout.startswith("0 uploaded, 0 failed")


def test_a_fresh_project_names_what_to_do(home, supabase_project_factory):
    """Issue 12, failure 1: imagen not exposed (406), then exposed but not granted (403)."""
    hidden = supabase_project_factory(schemas="public")
    _cloud_config(home, hidden)
    proc = _generate(home)
    assert proc.returncode == 6
    assert "does not expose the imagen schema: add imagen to the exposed schemas" in proc.stderr
    assert len(hidden.storage.objects) == 1  # uploaded; the record is what failed

    unmigrated = supabase_project_factory(migrated=False)
    with psycopg.connect(unmigrated.db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA imagen; CREATE SCHEMA mai")
    _cloud_config(home, unmigrated)
    proc = _generate(home)
    assert proc.returncode == 6
    assert "run imagen db migrate" in proc.stderr, proc.stderr


def test_bucket_limits_are_the_servers(cloud_home, supabase_project):
    storage = supabase_project.storage
    storage.set_bucket(BUCKET, allowed_mime_types=["image/jpeg", "image/webp"])
    wrong_type = _generate(cloud_home)
    assert wrong_type.returncode == 6
    assert "(415 invalid_mime_type): mime type image/png is not supported" in wrong_type.stderr
    storage.set_bucket(BUCKET, allowed_mime_types=["image/*"], file_size_limit=64)
    too_big = _generate(cloud_home)
    assert too_big.returncode == 6
    assert "(413 Payload too large): The object exceeded the maximum allowed size" in (
        too_big.stderr
    )
    assert storage.objects == {}
    assert _rows(supabase_project) == []


def test_the_worker_images_are_left_to_the_worker(cloud_home, supabase_project):
    """Issue 12, failure 4: a sync of the worker's directory filed its images under local/."""
    text = (cloud_home.cwd / "imagen.yaml").read_text()
    cloud_home.write_config(text.replace("cloud:\n", "cloud:\n  enabled: false\n"))
    image = json.loads(_generate(cloud_home).stdout)["images"][0]
    sidecar = Path(image["sidecar"])
    record = json.loads(sidecar.read_text())
    record["job"] = {"id": 12, "owner": "3f1c0a56-3a5e-4a2b-9a3e-6f0e8f1b2c3d"}
    sidecar.write_text(json.dumps(record))  # as the worker's cloud step stamps it
    cloud_home.write_config(text)
    proc = cloud_home.run("cloud", "sync")
    assert proc.returncode == 0, proc.stderr
    assert "job 12's image, left to the worker" in proc.stdout
    assert "imagen jobs retry 12" in proc.stdout
    assert proc.stdout.strip().endswith(
        f"0 uploaded, 0 failed, 1 left to the worker, under {cloud_home.root / 'out'}"
    )
    assert supabase_project.storage.objects == {}
    assert _rows(supabase_project) == []


def test_cloud_mistakes_are_named(home, supabase_project):
    url = supabase_project.url
    config = home.write_config(f"cloud:\n  url: {url}\n  bucket: images\n")
    missing_key = home.run("generate", "x", "--size", "32x32")
    assert missing_key.returncode == 3
    assert missing_key.stderr.strip().endswith(
        "cloud.key_env: environment variable SUPABASE_SERVICE_ROLE_KEY is not set"
    )
    home.env["SUPABASE_SERVICE_ROLE_KEY"] = supabase_project.anon_key
    anon = home.run("generate", "x", "--size", "32x32")
    assert anon.returncode == 3
    assert "SUPABASE_SERVICE_ROLE_KEY holds the anon key; cloud sync needs the service_role" in (
        anon.stderr
    )
    assert supabase_project.anon_key not in anon.stderr
    home.write_config(f"cloud:\n  url: {url}\n  bucket: images\n  path: '{{user}}.png'\n")
    home.env["SUPABASE_SERVICE_ROLE_KEY"] = supabase_project.service_key
    bad_path = home.run("generate", "x", "--size", "32x32")
    assert bad_path.returncode == 3
    assert "cloud.path: unknown placeholder {user}" in bad_path.stderr
    home.write_config("cloud:\n  bucket: images\n  url_kind: public\n")
    no_url = home.run("generate", "x", "--size", "32x32")
    assert no_url.returncode == 3
    assert no_url.stderr.strip() == f"imagen: {config}:1: cloud.url: is required"


@pytest.mark.parametrize(
    ("key", "said"),
    [
        ("not-a-jwt-service-key", "Invalid API key"),
        (token("service_role", secret="another-project-secret-of-32-characters"), "Invalid API"),
    ],
)
def test_a_key_the_project_refuses_is_a_clear_permanent_failure(home, supabase_project, key, said):
    _cloud_config(home, supabase_project)
    home.env["SUPABASE_SERVICE_ROLE_KEY"] = key
    proc = _generate(home)
    assert proc.returncode == 6
    assert said in proc.stderr
    assert key not in proc.stderr
    assert supabase_project.storage.objects == {}


def test_a_missing_bucket_is_a_clear_permanent_failure(cloud_home, supabase_project):
    supabase_project.storage.drop_buckets()
    proc = _generate(cloud_home)
    assert proc.returncode == 6
    assert "Supabase Storage refused images/local/" in proc.stderr
    assert "(404 Bucket not found): Bucket not found" in proc.stderr


def test_public_urls_and_no_rows_when_asked(cloud_home, supabase_project):
    supabase_project.storage.set_bucket(BUCKET, public=True)
    text = (cloud_home.cwd / "imagen.yaml").read_text()
    cloud_home.write_config(text + "  url_kind: public\n  record_images: false\n")
    proc = _generate(cloud_home)
    assert proc.returncode == 0, proc.stderr
    image = json.loads(proc.stdout)["images"][0]
    cloud = json.loads(Path(image["sidecar"]).read_text())["cloud"]
    url = f"{supabase_project.url}/storage/v1/object/public/images/{cloud['path']}"
    assert cloud["url"] == url
    with urllib.request.urlopen(url) as response:
        assert response.read() == Path(image["path"]).read_bytes()
    assert _rows(supabase_project) == []


def test_a_transient_upload_failure_is_retried_by_the_shared_policy(cloud_home, supabase_project):
    storage = supabase_project.storage
    text = (cloud_home.cwd / "imagen.yaml").read_text()
    cloud_home.write_config(text.replace("retry_attempts: 1", "retry_attempts: 3"))
    storage.fail_uploads = 1
    proc = _generate(cloud_home)
    assert proc.returncode == 0, proc.stderr
    assert len(storage.objects) == 1
    assert len(storage.uploads) == 1  # the 502 never got as far as storing anything
