"""tools/sync_workspace.py: a long-lived hatch environment tests what the working tree declares."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sync():
    path = ROOT / "tools" / "sync_workspace.py"
    spec = importlib.util.spec_from_file_location("sync_workspace", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hatch_run_test_syncs_the_workspace_first():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["envs"]
    assert scripts["default"]["scripts"]["test"][0] == "python tools/sync_workspace.py"


def test_every_package_this_run_tests_is_installed_as_declared(sync):
    members = sorted(ROOT.glob("packages/*/pyproject.toml"))
    assert len(members) >= 6
    assert {member.parent.name: sync.why_stale(member) for member in members} == {
        member.parent.name: None for member in members
    }


def _edited(tmp_path: Path, edit) -> Path:
    text = (ROOT / "packages" / "imagen-core" / "pyproject.toml").read_text()
    copy = tmp_path / "pyproject.toml"
    copy.write_text(edit(text))
    return copy


def test_a_new_entry_point_a_new_dependency_or_a_new_package_is_stale(sync, tmp_path):
    plugin = _edited(
        tmp_path,
        lambda text: text.replace(
            "[project.entry-points.imagen]\n", '[project.entry-points.imagen]\nnew = "imagen.new"\n'
        ),
    )
    assert sync.why_stale(plugin) == "its entry points changed"
    script = _edited(
        tmp_path,
        lambda text: text.replace(
            "[project.scripts]\n", '[project.scripts]\nimg = "imagen.cli:main"\n'
        ),
    )
    assert sync.why_stale(script) == "its entry points changed"
    dependency = _edited(
        tmp_path,
        lambda text: text.replace("dependencies = [\n", 'dependencies = [\n  "six>=1",\n', 1),
    )
    assert sync.why_stale(dependency) == "its dependencies changed"
    renamed = _edited(
        tmp_path, lambda text: text.replace('name = "imagen-core"', 'name = "imagen-unheard-of"')
    )
    assert sync.why_stale(renamed) == "it is not installed"


def test_an_extra_s_dependencies_and_their_spelling_do_not_make_it_stale(sync, tmp_path):
    respelled = _edited(tmp_path, lambda text: text.replace(">=", " >= "))
    assert sync.why_stale(respelled) is None
