"""Cloud sync through the real supabase-py against a loopback Supabase."""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from supabase_standin import SupabaseStandIn

KEY = "service-role-key-for-tests-0123456789"


@pytest.fixture
def supabase() -> Iterator[SupabaseStandIn]:
    with SupabaseStandIn(KEY) as server:
        yield server


@pytest.fixture
def cloud_home(home, supabase):
    home.env["SUPABASE_SERVICE_ROLE_KEY"] = KEY
    home.write_config(
        f"""
        output:
          directory: {home.root / "out"}
        cloud:
          url: {supabase.url}
          bucket: images
          path: "{{owner}}/{{date:%Y}}/{{slug}}-{{seed}}-{{index}}.{{ext}}"
          retry_attempts: 1
        """
    )
    return home


def _generate(home, *args: str):
    return home.run("generate", "a red fox", "--size", "32x32", "--seed", "5", "--json", *args)


def test_each_image_is_uploaded_recorded_and_noted_in_its_sidecar(cloud_home, supabase):
    proc = _generate(cloud_home, "-n", "2")
    assert proc.returncode == 0, proc.stderr
    images = json.loads(proc.stdout)["images"]
    year = json.loads(Path(images[0]["sidecar"]).read_text())["created"][:4]
    assert sorted(supabase.objects) == [
        ("images", f"local/{year}/a-red-fox-5-1.png"),
        ("images", f"local/{year}/a-red-fox-6-2.png"),
    ]
    for image in images:
        record = json.loads(Path(image["sidecar"]).read_text())
        cloud = record["cloud"]
        data, mime_type = supabase.objects[(cloud["bucket"], cloud["path"])]
        assert data == Path(image["path"]).read_bytes()
        assert mime_type == "image/png"
        with urllib.request.urlopen(cloud["url"]) as response:  # signed: no credentials
            assert response.read() == data
    assert [upload["upsert"] for upload in supabase.uploads] == ["false", "false"]
    assert [(row["owner"], row["storage_location"], row["seed"]) for row in supabase.rows] == [
        ("local", f"local/{year}/a-red-fox-5-1.png", 5),
        ("local", f"local/{year}/a-red-fox-6-2.png", 6),
    ]
    assert KEY not in Path(images[0]["sidecar"]).read_text()


def test_an_object_with_the_same_bytes_counts_as_synced_and_different_bytes_are_kept(
    cloud_home, supabase
):
    first = json.loads(_generate(cloud_home).stdout)["images"][0]
    sidecar = Path(first["sidecar"])
    record = json.loads(sidecar.read_text())
    cloud = record.pop("cloud")
    sidecar.write_text(json.dumps(record))  # as if it stopped between upload and sidecar
    retried = cloud_home.run("cloud", "sync")
    assert retried.returncode == 0, retried.stderr
    assert "1 uploaded, 0 failed" in retried.stdout
    assert json.loads(sidecar.read_text())["cloud"]["path"] == cloud["path"]

    clash = _generate(cloud_home)  # same name; new bytes (its metadata has a new time)
    assert clash.returncode == 6
    assert "already holds a different file; not overwritten" in clash.stderr
    assert supabase.objects[("images", cloud["path"])][0] == Path(first["path"]).read_bytes()


def test_an_outage_keeps_the_image_and_cloud_sync_catches_up(cloud_home, supabase):
    supabase.outage = True
    failed = _generate(cloud_home, "-n", "2")
    assert failed.returncode == 6
    saved = json.loads(failed.stdout)["images"]
    assert all(Path(image["path"]).is_file() for image in saved)
    assert "the image stays at" in failed.stderr
    assert "imagen cloud sync" in failed.stderr
    assert KEY not in failed.stderr
    assert supabase.objects == {}

    still_down = cloud_home.run("cloud", "sync")
    assert still_down.returncode == 6
    assert "0 uploaded, 2 failed" in still_down.stdout

    supabase.outage = False
    synced = cloud_home.run("cloud", "sync")
    assert synced.returncode == 0, synced.stderr
    assert "2 uploaded, 0 failed" in synced.stdout
    for image in saved:
        cloud = json.loads(Path(image["sidecar"]).read_text())["cloud"]
        data = supabase.objects[("images", cloud["path"])][0]
        assert (
            hashlib.sha256(data).digest()
            == hashlib.sha256(Path(image["path"]).read_bytes()).digest()
        )
    assert len(supabase.rows) == 2
    nothing_left = cloud_home.run("cloud", "sync")
    assert "0 uploaded, 0 failed" in nothing_left.stdout
    assert len(supabase.uploads) == 2  # the outage's attempts never reached storage


def test_cloud_mistakes_are_named(home, supabase):
    config = home.write_config(f"cloud:\n  url: {supabase.url}\n  bucket: images\n")
    missing_key = home.run("generate", "x", "--size", "32x32")
    assert missing_key.returncode == 3
    assert missing_key.stderr.strip().endswith(
        "cloud.key_env: environment variable SUPABASE_SERVICE_ROLE_KEY is not set"
    )
    home.write_config(f"cloud:\n  url: {supabase.url}\n  bucket: images\n  path: '{{user}}.png'\n")
    home.env["SUPABASE_SERVICE_ROLE_KEY"] = KEY
    bad_path = home.run("generate", "x", "--size", "32x32")
    assert bad_path.returncode == 3
    assert "cloud.path: unknown placeholder {user}" in bad_path.stderr
    home.write_config("cloud:\n  bucket: images\n  url_kind: public\n")
    no_url = home.run("generate", "x", "--size", "32x32")
    assert no_url.returncode == 3
    assert no_url.stderr.strip() == f"imagen: {config}: cloud.url: is required"


def test_a_missing_bucket_is_a_clear_permanent_failure(cloud_home, supabase):
    supabase.buckets.clear()
    proc = _generate(cloud_home)
    assert proc.returncode == 6
    assert "Supabase Storage refused images/local/" in proc.stderr
    assert "(404 Bucket not found): Bucket not found" in proc.stderr


def test_public_urls_and_no_rows_when_asked(cloud_home, supabase):
    text = (cloud_home.cwd / "imagen.yaml").read_text()
    cloud_home.write_config(text + "  url_kind: public\n  record_images: false\n")
    proc = _generate(cloud_home)
    assert proc.returncode == 0, proc.stderr
    cloud = json.loads(Path(json.loads(proc.stdout)["images"][0]["sidecar"]).read_text())["cloud"]
    assert cloud["url"] == f"{supabase.url}/storage/v1/object/public/images/{cloud['path']}"
    assert supabase.rows == []


def test_a_transient_upload_failure_is_retried_by_the_shared_policy(cloud_home, supabase):
    text = (cloud_home.cwd / "imagen.yaml").read_text()
    cloud_home.write_config(text.replace("retry_attempts: 1", "retry_attempts: 3"))
    supabase.fail_uploads = 1
    proc = _generate(cloud_home)
    assert proc.returncode == 0, proc.stderr
    assert len(supabase.objects) == 1
    assert len(supabase.uploads) == 1  # the 502 never got as far as storing anything
