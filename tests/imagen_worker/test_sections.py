"""The ``worker:`` and ``serve:`` sections: every key checked, secrets redacted, owners sane."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest
import yaml
from worker_helpers import job, submit, wait_for

KNOWN_WORKER = "(known: database_url, web_role, concurrency)"


@pytest.fixture
def worker_home(home):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    return home


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("worker:\n  databse_url: postgresql://imagen:pw@db/imagen\n", "databse_url"),
        ("worker:\n  concurency: 4\n", "concurency"),
        ("worker:\n  web_rol: web\n", "web_rol"),
    ],
)
def test_a_misspelt_worker_key_is_an_error_naming_file_line_and_key(worker_home, section, key):
    path = worker_home.write_config(f"output:\n  directory: out\n{section}")
    expected = f"imagen: {path}:4: worker.{key}: unknown key {KNOWN_WORKER}"
    check = worker_home.run("config", "check")
    assert (check.returncode, check.stderr.strip()) == (3, expected)
    # Every command sees it too: no queue command falls back to the embedded database.
    listing = worker_home.run("jobs", "list")
    assert (listing.returncode, listing.stderr.strip()) == (3, expected)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("worker:\n  concurrency: 0\n", ":2: worker.concurrency: must be at least 1, not 0"),
        ("worker:\n  concurrency: four\n", ":2: worker.concurrency: must be a whole number"),
        (
            "worker:\n  database_url: mysql://db/x\n",
            ":2: worker.database_url: must be a PostgreSQL",
        ),
        ("worker:\n  web_role: 'a; drop'\n", ":2: worker.web_role: must be the name of a database"),
        ("serve:\n  prot: 8080\n", ":2: serve.prot: unknown key (known: host, port"),
        ("serve:\n  port: 70000\n", ":2: serve.port: must be a port number"),
    ],
)
def test_worker_and_serve_values_are_checked_on_load(worker_home, section, expected):
    worker_home.write_config(section)
    proc = worker_home.run("config", "check")
    assert proc.returncode == 3
    assert expected in proc.stderr


def test_worker_concurrency_sets_how_many_jobs_a_worker_runs_at_once(worker_home, conn, db_url):
    worker_home.write_config(
        f"output:\n  directory: {worker_home.root / 'out'}\n"
        f"worker:\n  database_url: {db_url}\n  concurrency: 3\n"
    )
    jobs = [submit(conn, options={"delay": 60}) for _ in range(3)]
    process = subprocess.Popen(
        [sys.executable, "-m", "imagen", "worker", "--grace", "0.1", "--poll", "0.5"],
        cwd=worker_home.cwd,
        env=worker_home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for job_id in jobs:  # all three held at once by the one process
            wait_for(conn, job_id, ("running",), timeout=60)
        assert {job(conn, j)["status"] for j in jobs} == {"running"}
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_config_show_redacts_the_database_password(worker_home):
    worker_home.write_config(
        """
        worker:
          database_url: postgresql://imagen:s3cr3t-pass@db.internal:5432/imagen
        backends:
          remote:
            type: mock
            endpoint: https://bob:hunter2pass@example.test/api
            dsn: host=db password=libpq-secret user=u
        """
    )
    proc = worker_home.run("config", "show", check=True)
    for secret in ("s3cr3t-pass", "hunter2pass", "libpq-secret"):
        assert secret not in proc.stdout
    data = yaml.safe_load(proc.stdout)
    assert data["worker"]["database_url"] == "postgresql://imagen:***@db.internal:5432/imagen"
    assert data["backends"]["remote"]["endpoint"] == "https://bob:***@example.test/api"
    assert data["backends"]["remote"]["dsn"] == "host=db password=*** user=u"


# -- imagen serve-key and serve.api_keys ---------------------------------------------------


@pytest.mark.parametrize("owner", ["", "   ", "alice\nbob", "tab\there", " alice", "x" * 256])
def test_serve_key_refuses_an_owner_that_cannot_work(worker_home, owner):
    proc = worker_home.run("serve-key", owner)
    assert proc.returncode == 2
    assert proc.stdout == ""  # no key, no snippet
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("imagen: ")
    assert "OWNER" in lines[0]


@pytest.mark.parametrize(
    "owner", ["alice", "yes", "123", "a: b", "#hash", "Zoë Ö", "bob@example.com"]
)
def test_serve_key_snippet_reads_back_as_the_owner(worker_home, owner):
    made = worker_home.run("serve-key", owner, check=True)
    snippet = made.stdout[made.stdout.index("serve:") - 2 :]  # the lines to add, as printed
    path = worker_home.write_config(snippet)
    assert worker_home.run("config", "check").returncode == 0
    keys = yaml.safe_load(path.read_text())["serve"]["api_keys"]
    assert list(keys.values()) == [owner]


@pytest.mark.parametrize("owner", ['""', "'  '", '"alice\\nbob"', "null", "[a]"])
def test_config_check_refuses_an_api_key_for_no_owner(worker_home, owner):
    digest = "a" * 64
    path = worker_home.write_config(f'serve:\n  api_keys:\n    "{digest}": {owner}\n')
    proc = worker_home.run("config", "check")
    assert proc.returncode == 3
    assert re.fullmatch(
        rf"imagen: {re.escape(str(path))}:3: serve\.api_keys\.{digest}: .+", proc.stderr.strip()
    ), proc.stderr
