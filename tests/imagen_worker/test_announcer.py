"""Announcements on imagen_progress, batched from a thread of their own."""

from __future__ import annotations

import psycopg

from imagen_worker.announcer import Announcer


def test_announcements_arrive_in_order_and_close_sends_what_is_queued(conn, db_url):
    conn.execute("LISTEN imagen_progress")
    announcer = Announcer(db_url)
    announcer.start()
    for n in range(50):
        announcer.announce(f"token-{n}")
    announcer.close()
    received = [note.payload for note in conn.notifies(timeout=10, stop_after=50)]
    assert received == [f"token-{n}" for n in range(50)]


def test_a_database_that_is_away_drops_announcements_without_raising(conn, db_url):
    params = psycopg.conninfo.conninfo_to_dict(db_url)
    away = psycopg.conninfo.make_conninfo(db_url, dbname=f"{params['dbname']}_missing")
    announcer = Announcer(away)
    announcer.start()
    announcer.announce("token-1")
    announcer.close()  # returns: nothing to retry, nothing raised in the thread
    conn.execute("LISTEN imagen_progress")
    announcer = Announcer(db_url)  # and a reachable database still hears the next one
    announcer.start()
    announcer.announce("token-2")
    announcer.close()
    assert [n.payload for n in conn.notifies(timeout=10, stop_after=1)] == ["token-2"]
