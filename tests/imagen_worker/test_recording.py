"""How a job's end is recorded: all its images or none, whatever the database answers."""

from __future__ import annotations

import threading

from worker_helpers import job, running, submit, wait_for, worker_config

from imagen import Backend, GeneratedImage, Result, hookimpl
from imagen.backends.drawing import render
from imagen.config import parse_config
from imagen.yamlfile import Located
from imagen_worker.daemon import Worker, WorkerSettings
from imagen_worker.queries import REQUEUE


def _files(path) -> list:
    return sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())


def test_a_job_that_fails_part_way_keeps_no_image_and_its_retry_writes_each_once(
    conn, db_url, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "3").write_text("not a directory")  # image 3 of 3 cannot be written
    config = parse_config(
        Located({"output": {"directory": str(out), "naming": "{index}/{seed}.{ext}"}})
    )
    with running(config, db_url):
        job_id = submit(conn, width=16, height=16, count=3, seed=7)
        failed = wait_for(conn, job_id, ("failed",))
        assert failed["error_kind"] == "output"
        assert "cannot write to" in failed["error"]
        assert _files(out) == [out.joinpath("3").relative_to(out)]  # images 1 and 2 removed
        assert conn.execute("SELECT count(*) FROM imagen.images").fetchone()[0] == 0

        (out / "3").unlink()
        conn.execute(REQUEUE, (job_id,))
        wait_for(conn, job_id, ("done",))
    names = [str(path) for path in _files(out) if path.suffix != ".json"]
    assert names == ["1/7.png", "2/8.png", "3/9.png"]  # each once, nothing beside old ones
    assert conn.execute("SELECT count(*) FROM imagen.images").fetchone()[0] == 3


def test_an_end_the_database_refuses_fails_the_job_saying_so_and_the_slot_goes_on(
    conn, db_url, tmp_path
):
    conn.execute(
        """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'no room for images' USING ERRCODE = 'disk_full'; END $$;
        CREATE TRIGGER refuse BEFORE INSERT ON imagen.images FOR EACH ROW EXECUTE FUNCTION refuse();
        """
    )
    config = worker_config(tmp_path)
    with running(config, db_url, concurrency=1):
        refused = wait_for(conn, submit(conn, width=16, height=16, count=2), ("failed",))
        assert refused["error"] == "its end could not be recorded: no room for images"
        assert refused["error_kind"] == "internal"
        assert not (tmp_path / "out").exists() or _files(tmp_path / "out") == []
        conn.execute("DROP TRIGGER refuse ON imagen.images")
        wait_for(conn, submit(conn, width=16, height=16), ("done",))  # the same slot goes on


def test_a_job_whose_end_cannot_be_recorded_any_way_stops_the_worker_loudly(
    conn, db_url, tmp_path, caplog
):
    caplog.set_level("INFO", logger="imagen")
    conn.execute(
        """
        CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'read-only' USING ERRCODE = 'read_only_sql_transaction'; END $$;
        CREATE TRIGGER refuse BEFORE UPDATE OF status ON imagen.jobs FOR EACH ROW
            WHEN (NEW.status <> 'running') EXECUTE FUNCTION refuse();
        """
    )
    worker = Worker(worker_config(tmp_path), db_url, WorkerSettings(poll_s=0.5, lease_s=30))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    job_id = submit(conn, width=16, height=16)
    thread.join(60)
    assert not thread.is_alive()  # it stopped by itself, and said why
    assert worker.fatal == f"a job thread failed on job {job_id}: ReadOnlySqlTransaction"
    lines = [record.getMessage() for record in caplog.records]
    assert any(line.startswith(f"event=slot_failed job={job_id}") for line in lines)
    assert any(line.startswith("event=stopped reason=") for line in lines)
    conn.execute("DROP TRIGGER refuse ON imagen.jobs")
    assert job(conn, job_id)["status"] == "running"  # its lease runs out; recovery takes it


def test_the_reconnect_backoff_resets_once_connected(conn, db_url, tmp_path, caplog):
    caplog.set_level("INFO", logger="imagen")
    with running(worker_config(tmp_path), db_url, poll_s=0.5):
        for blip in range(1, 9):  # 7 blips once left every later one waiting 30 s
            listening = _count(caplog, "event=listening")
            killed = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            assert killed >= 1
            _until(lambda n=listening: _count(caplog, "event=listening") > n)
            assert _count(caplog, "event=db_lost") == blip
        wait_for(conn, submit(conn, width=16, height=16), ("done",))
    delays = [
        record.getMessage().split()[1]
        for record in caplog.records
        if record.getMessage().startswith("event=db_lost")
    ]
    assert delays == ["reconnect_in_s=0.5"] * 8


def _count(caplog, prefix: str) -> int:
    return sum(1 for record in caplog.records if record.getMessage().startswith(prefix))


def _until(condition, timeout: float = 30) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        done.wait(0.05)
    raise AssertionError("the worker did not reconnect")


class _Unstorable(Backend):
    """Facts the database can't store as given: a seed past bigint, NUL in strings."""

    def generate(self, request, context):
        image = GeneratedImage.from_bytes(
            render("x", 1, 16, 16), "image/png", seed=2**64 - 1, metadata={"note\x00": "a\x00b"}
        )
        return Result([image], {"model": "m\x00", "nan": float("nan")})


def test_image_facts_the_database_cannot_store_still_record_the_job(
    conn, db_url, tmp_path, register_plugin
):
    class Plugin:
        @staticmethod
        @hookimpl
        def imagen_backend():
            return {"unstorable": _Unstorable}

    register_plugin(Plugin(), "unstorable")
    config = worker_config(tmp_path, {"u": {"type": "unstorable"}})
    with running(config, db_url):
        row = wait_for(conn, submit(conn), ("done", "failed"))
    assert row["status"] == "done", row["error"]
    seed, metadata = conn.execute(
        "SELECT seed, metadata FROM imagen.images WHERE job_id = %s", (row["id"],)
    ).fetchone()
    assert seed is None  # past bigint: the column stays empty, the job is still recorded
    assert metadata["model"] == "m"
    assert metadata["note"] == "ab"
    assert metadata["nan"] is None
