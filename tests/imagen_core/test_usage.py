"""Usage records: one per generation, in the local SQLite file or a plugin's sink."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from imagen import hookimpl
from imagen.backends.mock import MockBackend
from imagen.usage import UsageRecord, UsageSink, summarize


def _usage(cli, *args: str) -> dict:
    result = cli("usage", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_generation_succeeded_or_failed_is_recorded(cli, home):
    assert cli("generate", "a cat", "-n", "2", "--size", "32x32").exit_code == 0
    failed = cli("generate", "a dog", "--size", "32x32", "--opt", "fail=permanent")
    assert failed.exit_code != 0
    report = _usage(cli, "--by", "status")
    assert report["source"].startswith("SQLite file ")
    assert report["source"].endswith("/.local/share/imagen/usage.sqlite3")
    assert [(r["status"], r["generations"], r["images"]) for r in report["rows"]] == [
        ("done", 1, 2),
        ("failed", 1, 0),
    ]
    assert report["total"]["failed"] == 1
    assert report["total"]["cost_usd"] == 0.0  # the mock backend says it costs nothing
    assert report["total"]["unpriced"] == 1  # the failure reported no cost: never guessed


def test_the_table_names_its_source_and_totals(cli, home):
    cli("generate", "a cat", "--size", "32x32")
    cli("generate", "a cat", "--size", "32x32", "--backend", "mock")
    text = cli("usage", "--by", "backend", "--by", "model").output
    assert "from the SQLite file" in text
    lines = text.splitlines()
    assert lines[1].split() == [
        "backend",
        "model",
        "generations",
        "images",
        "failed",
        "cost",
        "(USD)",
        "unpriced",
    ]
    assert lines[2].split() == ["mock", "imagen-mock", "2", "2", "0", "0.0000", "0"]
    assert lines[3].split()[:2] == ["total", "2"]


def test_periods_bound_the_report(cli, home):
    cli("generate", "a cat", "--size", "32x32")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert _usage(cli, "--since", tomorrow)["rows"] == []
    assert _usage(cli, "--since", "1h")["total"]["generations"] == 1
    assert _usage(cli, "--since", "2w", "--until", tomorrow)["total"]["generations"] == 1
    bad = cli("usage", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "'last tuesday' is not a date" in bad.output


def test_recording_can_be_turned_off_and_the_file_moved(cli, home):
    home.write_config("usage:\n  record: false\n")
    cli("generate", "a cat", "--size", "32x32")
    assert not (home.home / ".local/share/imagen/usage.sqlite3").exists()
    home.write_config(f"usage:\n  path: {home.root / 'elsewhere.db'}\n")
    cli("generate", "a cat", "--size", "32x32")
    assert (home.root / "elsewhere.db").is_file()
    assert _usage(cli)["total"]["generations"] == 1


def test_a_mistyped_usage_key_names_its_file_line_and_key(home):
    config = home.write_config("output:\n  write_metadata_json: false\nusage:\n  recrod: false\n")
    result = home.run("generate", "a cat")
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"imagen: {config}:4: usage.recrod: unknown key (known: record, path, confirm_over, budget)"
    )


class _MemorySink(UsageSink):
    description = "test memory"
    kept: ClassVar[list[UsageRecord]] = []

    def record(self, record):
        if record.status == "failed":
            raise OSError("the disk is full")
        self.kept.append(record)

    def records(self, since, until):
        return list(self.kept)


def test_a_plugin_sink_is_used_and_its_failure_never_loses_the_image(cli, home, register_plugin):
    class Plugin:
        @staticmethod
        @hookimpl
        def imagen_usage_sink(config):
            return _MemorySink()

    register_plugin(Plugin(), "memory-sink")
    _MemorySink.kept.clear()
    ok = cli("generate", "a cat", "--size", "32x32", "--seed", "7")
    assert ok.exit_code == 0
    (kept,) = _MemorySink.kept
    assert (kept.backend, kept.backend_type, kept.images, kept.width, kept.status) == (
        "mock", "mock", 1, 32, "done"
    )  # fmt: skip
    assert _usage(cli)["source"] == "test memory"


def test_summaries_add_known_costs_and_count_the_unpriced():
    at = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    records = [
        UsageRecord(at, "flux", "replicate", "done", model="m1", images=2, cost_usd=0.006),
        UsageRecord(at + timedelta(hours=1), "flux", "replicate", "done", model="m1", images=1, cost_usd=0.003),
        UsageRecord(at, "home", "comfyui", "failed", model=None),
    ]  # fmt: skip
    assert summarize(records, ["day", "backend"]) == [
        {"day": "2026-11-24", "backend": "flux", "generations": 1, "images": 2, "failed": 0,
         "cost_usd": 0.006, "unpriced": 0},
        {"day": "2026-11-24", "backend": "home", "generations": 1, "images": 0, "failed": 1,
         "cost_usd": 0.0, "unpriced": 1},
        {"day": "2026-11-25", "backend": "flux", "generations": 1, "images": 1, "failed": 0,
         "cost_usd": 0.003, "unpriced": 0},
    ]  # fmt: skip


class _Counted(MockBackend):
    calls: ClassVar[int] = 0

    def generate(self, request, context):
        type(self).calls += 1
        return super().generate(request, context)


@pytest.fixture
def counted(register_plugin):
    class Plugin:
        @staticmethod
        @hookimpl
        def imagen_backend():
            return {"counted": _Counted}

    register_plugin(Plugin(), "counted")
    _Counted.calls = 0
    return _Counted


def test_a_run_that_would_cross_a_cap_is_refused_before_the_backend_is_called(cli, home, counted):
    home.write_config(
        """
        backends:
          paid: {type: counted, price_per_image_usd: 0.4, width: 32, height: 32}
          free: {type: counted, width: 32, height: 32}
        usage:
          budget:
            daily_usd: 1
            backends:
              paid: {monthly_usd: 100}
        """
    )
    assert cli("generate", "one", "-b", "paid", "-n", "2").exit_code == 0  # $0.80
    refused = cli("generate", "two", "-b", "paid")
    assert refused.exit_code == 8
    assert counted.calls == 1
    assert (
        "refused before calling the backend: the daily cap of $1.00 would be crossed: "
        "$0.8000 spent or held today (UTC), and this run is estimated at $0.4000"
    ) in refused.output
    assert cli("generate", "three", "-b", "free").exit_code == 0  # costs nothing: fits
    report = _usage(cli, "--by", "status")
    assert [(r["status"], r["generations"], r["cost_usd"]) for r in report["rows"]] == [
        ("done", 2, 0.8),
        ("refused", 1, 0.0),
    ]


def test_a_per_backend_cap_counts_only_that_backend(cli, home, counted):
    home.write_config(
        """
        backends:
          a: {type: counted, price_per_image_usd: 1, width: 32, height: 32}
          b: {type: counted, price_per_image_usd: 1, width: 32, height: 32}
        usage:
          budget:
            backends:
              a: {daily_usd: 1.5}
        """
    )
    assert cli("generate", "x", "-b", "a").exit_code == 0
    assert cli("generate", "x", "-b", "b", "-n", "3").exit_code == 0
    assert cli("generate", "x", "-b", "a").exit_code == 8
    assert counted.calls == 2


def test_budget_mistakes_name_their_key(home):
    config = home.write_config("usage:\n  budget:\n    daily_usd: lots\n")
    result = home.run("generate", "x")
    assert result.returncode == 3
    assert result.stderr.strip() == (
        f"imagen: {config}:3: usage.budget.daily_usd: must be a number of US dollars, not 'lots'"
    )
    config = home.write_config("usage:\n  budget:\n    per_owner: {weekly_usd: 3}\n")
    result = home.run("config", "check")
    assert result.returncode == 3
    assert "usage.budget.per_owner.weekly_usd: unknown key (known: daily_usd, monthly_usd)" in (
        result.stderr
    )
