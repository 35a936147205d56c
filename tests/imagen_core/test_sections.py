"""Every section of imagen.yaml, core's and a plugin's, is checked the same way."""

from __future__ import annotations

import subprocess
import sys

import pytest

from imagen import ConfigError, hookimpl
from imagen.config import load_config, top_level_keys
from imagen.sections import Section, Setting


class _Plugin:
    """A third-party plugin that reads a ``render_farm:`` section."""

    @staticmethod
    def _parse(data):
        if data.values["nodes"] < 1:
            raise data.error(f"must be at least 1, not {data.values['nodes']}", "nodes")
        return data.values

    @hookimpl
    def imagen_config_sections(self):
        return [
            Section(
                "render_farm",
                "the farm",
                {"nodes": Setting(int, 2, "machines"), "queue": Setting(str, "main", "queue")},
                parse=self._parse,
            )
        ]


def test_a_plugins_section_is_known_checked_and_read(home, register_plugin):
    register_plugin(_Plugin(), "farm")
    assert "render_farm" in top_level_keys()
    home.write_config("render_farm:\n  nodes: 4\n")
    assert load_config().section("render_farm") == {"nodes": 4, "queue": "main"}

    path = home.write_config("render_farm:\n  queue: x\n  nodse: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(info.value) == (f"{path}:3: render_farm.nodse: unknown key (known: nodes, queue)")
    home.write_config("render_farm:\n  nodes: 0\n")
    with pytest.raises(ConfigError, match=r":2: render_farm.nodes: must be at least 1, not 0"):
        load_config()
    home.write_config("render_farm:\n  nodes: two\n")
    with pytest.raises(ConfigError, match=r":2: render_farm.nodes: must be a whole number"):
        load_config()


def test_a_section_no_plugin_declares_is_an_error_naming_the_known_ones(home):
    path = home.write_config("output: {}\nrender_farm:\n  nodes: 4\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert message.startswith(f"{path}:2: render_farm: unknown top-level key (known: ")
    for known in ("default_backend", "backends", "output", "styles", "usage", "cloud"):
        assert known in message


def test_a_clashing_section_name_is_reported_and_the_first_kept(home, register_plugin, caplog):
    class Clash:
        @hookimpl
        def imagen_config_sections(self):
            return [Section("output", "mine", {"colour": Setting(str, None, "x")})]

    register_plugin(Clash(), "clash")
    home.write_config("output:\n  naming: '{slug}.{ext}'\n")
    assert load_config().output.naming.template == "{slug}.{ext}"
    assert 'config section "output" is already declared by sections' in caplog.text


def test_the_config_module_imports_no_section():
    """config.py is the mechanism only: loading it pulls in no section's module."""
    probe = (
        "import sys, imagen.config; "
        "print(sorted(m for m in sys.modules if m.startswith(('imagen.', 'imagen_'))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    for section_module in (
        "imagen.cloud",
        "imagen.usage",
        "imagen.output_settings",
        "imagen.preview",
        "imagen_worker",
    ):
        assert f"'{section_module}" not in loaded


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "usage:\n  recrod: false\n",
            ":2: usage.recrod: unknown key (known: record, path, confirm_over, budget)",
        ),
        ("usage:\n  budget:\n    daily: 5\n", ":3: usage.budget.daily: unknown key"),
        ("preview:\n  enabeld: true\n", ":2: preview.enabeld: unknown key"),
        ("styles:\n  noir:\n    sufix: x\n", ":3: styles.noir.sufix: unknown key (known: suffix"),
        ("styles:\n  noir: dark\n", ":2: styles.noir: must be a mapping"),
        ("cloud:\n  url: http://127.0.0.1:54321\n", ":1: cloud.bucket: is required"),
        (
            "cloud:\n  url: x.supabase.co\n  bucket: b\n",
            ":2: cloud.url: must be an http:// or https:// URL",
        ),
        ("cloud:\n  bucket: b\n  url: https://x\n  url_kind: s3\n", ":4: cloud.url_kind"),
    ],
)
def test_every_core_section_is_checked_on_load(home, text, expected):
    home.write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert expected in str(info.value)


def test_config_check_reports_a_section_error_with_file_line_and_key(home):
    path = home.write_config("output:\n  directroy: /tmp/x\n")
    proc = home.run("config", "check")
    assert proc.returncode == 3
    assert proc.stderr.strip() == (
        f"imagen: {path}:2: output.directroy: unknown key "
        "(known: directory, naming, write_metadata_json, embed_metadata)"
    )
