"""``generate --dry-run`` and the question before a paid run of many images."""

from __future__ import annotations

import json

PAID = """
backends:
  paid:
    type: mock
    price_per_image_usd: 0.04
"""


def test_dry_run_shows_the_resolved_request_backend_and_price(home):
    home.write_config(PAID + "styles:\n  noir:\n    suffix: ', film noir'\n    size: 96x64\n")
    proc = home.run("generate", "detective", "-b", "paid", "-s", "noir", "-n", "3", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(":", 1) for line in proc.stdout.splitlines())
    assert lines["backend"].strip() == "paid (mock)"
    assert lines["prompt"].strip() == "detective, film noir"  # the style applied
    assert lines["size"].strip() == "96x64"
    assert lines["seed"].strip().endswith("(chosen now: --seed to keep it)")
    assert lines["count"].strip() == "3"
    assert lines["estimate"].strip() == "$0.1200"
    assert proc.stderr == "nothing was generated (--dry-run)\n"
    assert not home.pictures.exists()


def test_dry_run_as_json_and_its_refusals(home):
    home.write_config(PAID)
    proc = home.run("generate", "x", "-b", "paid", "--seed", "7", "--dry-run", "--json")
    plan = json.loads(proc.stdout)
    assert plan["request"]["seed"] == 7
    assert (plan["seed_chosen"], plan["estimate_usd"], plan["paid"]) == (False, 0.04, True)
    # What the run would refuse, the dry run refuses the same way.
    proc = home.run("generate", "x", "--width", "5", "--dry-run")
    assert proc.returncode == 2
    assert "width 5 is out of bounds" in proc.stderr


def test_a_paid_run_of_many_images_is_refused_without_a_terminal(home):
    home.write_config(PAID)
    proc = home.run("generate", "x", "-b", "paid", "-n", "5", "--size", "32x32")
    assert proc.returncode == 2
    assert proc.stderr == (
        "imagen: this run makes 5 images on backend 'paid' (estimate: $0.2000), more than "
        "usage.confirm_over (4) allows without asking, and standard input is not a terminal "
        "to ask on; rerun with --yes to go ahead\n"
    )
    assert not home.pictures.exists()
    proc = home.run("generate", "x", "-b", "paid", "-n", "5", "--size", "32x32", "--yes")
    assert proc.returncode == 0
    assert len(proc.stdout.split()) == 5
    # Free runs and small ones are not asked about.
    assert home.run("generate", "x", "-b", "mock", "-n", "6", "--size", "16x16").returncode == 0
    assert home.run("generate", "x", "-b", "paid", "-n", "4", "--size", "16x16").returncode == 0


def test_on_a_terminal_it_asks(home):
    home.write_config(PAID + "usage:\n  confirm_over: 1\n")
    code, stdout, terminal = home.run_on_terminal(
        "generate", "x", "-b", "paid", "-n", "2", "--size", "32x32", typed="n\n"
    )
    assert code == 130
    assert b"imagen: make 2 images on backend 'paid' (estimate: $0.0800)? [y/N]" in terminal
    assert b"imagen: cancelled; nothing was generated" in terminal
    assert stdout == ""
    code, stdout, terminal = home.run_on_terminal(
        "generate", "x", "-b", "paid", "-n", "2", "--size", "32x32", typed="y\n"
    )
    assert code == 0, terminal
    assert len(stdout.split()) == 2


def test_confirm_over_is_checked_like_every_key(home):
    home.write_config("usage:\n  confirm_over: -5\n")
    proc = home.run("generate", "x")
    assert proc.returncode == 3
    assert "usage.confirm_over: must be -1 (never ask) or more, not -5" in proc.stderr
    home.write_config(PAID + "usage:\n  confirm_over: -1\n")
    assert home.run("generate", "x", "-b", "paid", "-n", "9", "--size", "16x16").returncode == 0
