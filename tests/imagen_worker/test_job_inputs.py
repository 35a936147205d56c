"""A job's input images in the queue: the door and the database agree, and the worker checks."""

from __future__ import annotations

import hashlib
import io
import json
import os
import string
import time

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from psycopg.types.json import Jsonb
from worker_helpers import running, wait_for

from imagen.config import parse_config
from imagen.yamlfile import Located
from imagen_worker.job_inputs import (
    check_refs,
    forget_uploads,
    keep_uploads,
    prune_uploads,
    upload_path,
)
from imagen_worker.submission import JobRejected

# -- the door and migration 0006 agree on every value -------------------------------------------

_HEX = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
_NOT_HEX = st.text(alphabet=string.hexdigits + "g\n ", max_size=70) | st.integers() | st.none()
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
_OBJECT = st.one_of(
    st.builds(lambda rest: f"imagen-inputs/alice/{rest}", _TEXT),
    st.builds(lambda rest: f"imagen-inputs/bob/{rest}", _TEXT),
    st.sampled_from(
        [
            "imagen-inputs/alice/../bob/x.png",
            "imagen-inputs/alice//x.png",
            "imagen-inputs/alice/./x.png",
            "imagen-inputs/alice\\x.png",
            "imagen-inputs/alice/" + "a" * 1100,
            "imagen-inputs/alice/x.png",
            "imagen-inputs/alice/",
            "imagen-inputs/alice",
            "/imagen-inputs/alice/x.png",
        ]
    ),
    _TEXT,
    st.integers(),
)
_REF = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["image", "reference", "mask"]) | _TEXT | st.integers(),
        "upload": _HEX | _NOT_HEX,
        "object": _OBJECT,
        "name": _TEXT | st.text(min_size=250, max_size=260) | st.none() | st.integers(),
        "sha256": _HEX | _NOT_HEX,
        "other": st.just(1),
    },
)
_SCALAR = st.none() | st.booleans() | st.integers(-5, 5) | _TEXT
_INPUTS = (
    st.lists(_REF, min_size=0, max_size=18)
    | st.lists(_REF | _SCALAR, max_size=4)
    | _SCALAR
    | st.dictionaries(_TEXT, _SCALAR, max_size=3)
)


@pytest.fixture(scope="module")
def checker(module_db_url):
    with psycopg.connect(module_db_url, autocommit=True) as conn:
        yield conn


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_INPUTS, owner=st.sampled_from(["alice", "bob", "a/b"]))
def test_the_door_and_the_database_refuse_the_same_inputs(checker, value, owner):
    reason = None
    try:
        check_refs(value, owner)
    except JobRejected as exc:
        reason = str(exc)
    door = reason is None
    if reason is not None:  # one line, naming the entry at fault
        assert reason.startswith("inputs")
        assert "\n" not in reason
    try:
        database = checker.execute(
            "SELECT imagen.inputs_ok(%s, %s)", (Jsonb(value), owner)
        ).fetchone()[0]
    except psycopg.errors.UntranslatableCharacter:  # jsonb holds no NUL: refused as it is
        database = False
    assert door == bool(database), (value, owner)


# -- the worker reads references as hostile -----------------------------------------------------


def _png(width: int = 24, height: int = 24) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def config(tmp_path):
    return parse_config(
        Located(
            {
                "output": {"directory": str(tmp_path / "out"), "write_metadata_json": False},
                "backends": {"mock": {"type": "mock"}},
                "serve": {"inputs_dir": str(tmp_path / "inputs")},
            }
        )
    )


def _queue(conn, owner: str, inputs, **fields) -> int:
    columns = ["owner", "prompt", "backend", "inputs", *fields]
    values = [owner, "an edit", "mock", Jsonb(inputs), *fields.values()]
    query = (
        f"INSERT INTO imagen.jobs ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(values))}) RETURNING id"
    )
    return conn.execute(query, values).fetchone()[0]


def test_an_upload_named_by_its_hash_is_edited_and_recorded(config, conn, db_url, tmp_path):
    data = _png()
    digest = hashlib.sha256(data).hexdigest()
    path = upload_path(tmp_path / "inputs", "alice", digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    with running(config, db_url):
        job = _queue(conn, "alice", [{"role": "image", "upload": digest, "name": "a.png"}],
                     strength=0.0)  # fmt: skip
        wait_for(conn, job, ("done",))
    (metadata, local) = conn.execute(
        "SELECT metadata, local_path FROM imagen.images WHERE job_id = %s", (job,)
    ).fetchone()
    assert metadata["inputs"][0]["sha256"] == digest
    with Image.open(local) as made:
        assert made.convert("RGB").tobytes() == Image.open(io.BytesIO(data)).tobytes()


def test_references_that_cannot_be_used_fail_their_job_and_the_worker_goes_on(
    config, conn, db_url, tmp_path
):
    inputs = tmp_path / "inputs"
    data = _png()
    digest = hashlib.sha256(data).hexdigest()
    # bob's upload: alice's job names the same hash, and finds nothing in her own folder
    theirs = upload_path(inputs, "bob", digest)
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(data)
    # a file whose bytes are not the ones its name says
    forged = upload_path(inputs, "alice", "0" * 64)
    forged.parent.mkdir(parents=True)
    forged.write_bytes(data)
    # a "PNG" that is not one
    junk = b"\x89PNG\r\n\x1a\n" + b"junk" * 10
    junk_digest = hashlib.sha256(junk).hexdigest()
    upload_path(inputs, "alice", junk_digest).write_bytes(junk)
    mine = _png(30, 30)
    mine_digest = hashlib.sha256(mine).hexdigest()
    upload_path(inputs, "alice", mine_digest).write_bytes(mine)
    cases = {
        "not in this worker's inputs directory": [{"role": "image", "upload": digest}],
        "its bytes are not the ones the job names": [{"role": "image", "upload": "0" * 64}],
        "damaged image": [{"role": "image", "upload": junk_digest}],
        "no cloud: section": [{"role": "image", "object": "imagen-inputs/alice/x.png"}],
        "takes at most 1 image": [{"role": "image", "upload": mine_digest}] * 2,
    }
    with running(config, db_url) as worker:
        jobs = {fragment: _queue(conn, "alice", refs) for fragment, refs in cases.items()}
        for fragment, job in jobs.items():
            wait_for(conn, job, ("failed",))
            error, kind = conn.execute(
                "SELECT error, error_kind FROM imagen.jobs WHERE id = %s", (job,)
            ).fetchone()
            assert fragment in error, error
            if "inputs[" in error:  # a reference it could not use is named
                assert f"job {job} inputs[" in error
            assert kind == "request"
            assert "\n" not in error
        fine = conn.execute(
            "INSERT INTO imagen.jobs (owner, prompt, backend) VALUES ('alice', 'x', 'mock') "
            "RETURNING id"
        ).fetchone()[0]
        wait_for(conn, fine, ("done",))
        assert worker.fatal is None


def test_the_database_refuses_another_owners_folder_and_a_second_mask(conn):
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_inputs_limits"):
        _queue(conn, "alice", [{"role": "image", "object": "imagen-inputs/bob/x.png"}])
    mask = {"role": "mask", "upload": "a" * 64}
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_inputs_limits"):
        _queue(conn, "alice", [{"role": "image", "upload": "b" * 64}, mask, mask])
    with pytest.raises(psycopg.errors.CheckViolation, match="jobs_strength_limits"):
        _queue(conn, "alice", [{"role": "image", "upload": "b" * 64}], strength=float("nan"))
    assert json.dumps(conn.execute("SELECT count(*) FROM imagen.jobs").fetchone()[0]) == "0"


def test_prune_removes_only_old_uploads_no_job_names(tmp_path):
    directory = tmp_path / "inputs"
    named = upload_path(directory, "alice", "a" * 64)
    orphan = upload_path(directory, "alice", "b" * 64)
    fresh = upload_path(directory, "bob", "c" * 64)
    leftover = directory / "incoming" / "imagen-input-x"
    for path in (named, orphan, fresh, leftover):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    old = time.time() - 3 * 86400
    for path in (named, orphan, leftover):
        os.utime(path, (old, old))
    assert prune_uploads(directory, {("alice", "a" * 64)}, 86400) == 2
    assert [path.exists() for path in (named, fresh, orphan, leftover)] == [
        True, True, False, False
    ]  # fmt: skip
    assert prune_uploads(tmp_path / "nothing-here", set(), 0) == 0


def test_keep_uploads_returns_only_what_it_added_and_takes_back_a_partial_keep(tmp_path):
    from imagen.inputs import load_input

    directory = tmp_path / "inputs"
    incoming = directory / "incoming"
    incoming.mkdir(parents=True)

    def staged(name: str, color: str):
        path = incoming / name
        Image.new("RGB", (8, 8), color).save(path, "PNG")
        return load_input(path, name=name)

    red = staged("red.png", "red")
    earlier = keep_uploads(directory, "alice", [red])
    assert earlier == [upload_path(directory, "alice", red.sha256)]
    again, blue = staged("red-again.png", "red"), staged("blue.png", "blue")
    assert keep_uploads(directory, "alice", [again, blue]) == [
        upload_path(directory, "alice", blue.sha256)  # red was kept already: not added
    ]
    green, gone = staged("green.png", "green"), staged("gone.png", "yellow")
    gone.path.unlink()  # the second of a job's inputs cannot be kept
    with pytest.raises(FileNotFoundError):
        keep_uploads(directory, "alice", [green, gone])
    assert not upload_path(directory, "alice", green.sha256).exists()  # taken back
    assert upload_path(directory, "alice", red.sha256).is_file()  # another job's: kept
    forget_uploads([*earlier, tmp_path / "never-there"])
    assert not upload_path(directory, "alice", red.sha256).exists()
