"""Per-user directories on Linux, macOS and Windows, with the XDG variables winning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagen.dirs import cache_dir, config_dir, data_dir

HOME = {"HOME": "/home/ada"}
WINDOWS = {
    "USERPROFILE": r"C:\Users\ada",
    "APPDATA": r"C:\Users\ada\AppData\Roaming",
    "LOCALAPPDATA": r"C:\Users\ada\AppData\Local",
}


@pytest.mark.parametrize(
    ("platform", "environ", "config", "data", "cache"),
    [
        (
            "linux",
            HOME,
            "/home/ada/.config/imagen",
            "/home/ada/.local/share/imagen",
            "/home/ada/.cache/imagen",
        ),
        (
            "darwin",
            HOME,
            "/home/ada/Library/Application Support/imagen",
            "/home/ada/Library/Application Support/imagen",
            "/home/ada/Library/Caches/imagen",
        ),
        (
            "win32",
            WINDOWS,
            r"C:\Users\ada\AppData\Roaming/imagen",
            r"C:\Users\ada\AppData\Local/imagen",
            r"C:\Users\ada\AppData\Local/imagen/Cache",
        ),
        (
            "win32",  # no APPDATA: the profile's usual places
            {"USERPROFILE": "/profile"},
            "/profile/AppData/Roaming/imagen",
            "/profile/AppData/Local/imagen",
            "/profile/AppData/Local/imagen/Cache",
        ),
    ],
)
def test_each_platform_has_its_own_places(platform, environ, config, data, cache):
    assert config_dir(environ, platform=platform) == Path(config)
    assert data_dir(environ, platform=platform) == Path(data)
    assert cache_dir(environ, platform=platform) == Path(cache)


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_xdg_variables_win_wherever_they_are_set(platform):
    environ = {
        **HOME,
        **WINDOWS,
        "XDG_CONFIG_HOME": "/x/config",
        "XDG_DATA_HOME": "/x/data",
        "XDG_CACHE_HOME": "/x/cache",
    }
    assert config_dir(environ, platform=platform) == Path("/x/config/imagen")
    assert data_dir(environ, platform=platform) == Path("/x/data/imagen")
    assert cache_dir(environ, platform=platform) == Path("/x/cache/imagen")


def test_an_empty_xdg_variable_counts_as_unset():
    assert config_dir({**HOME, "XDG_CONFIG_HOME": ""}, platform="darwin") == Path(
        "/home/ada/Library/Application Support/imagen"
    )


# The real imagen command, on a machine that says it is a Mac.
AS_MAC = "import sys; sys.platform = 'darwin'; from imagen.cli import main; main(sys.argv[1:])"


def _as_mac(home, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in home.env.items() if not k.startswith("XDG_")}
    return subprocess.run(
        [sys.executable, "-c", AS_MAC, *args],
        check=False,
        cwd=home.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_on_a_mac_the_config_is_found_in_application_support(home):
    support = home.home / "Library" / "Application Support" / "imagen"
    support.mkdir(parents=True)
    (support / "imagen.yaml").write_text("output:\n  directory: out\n")
    proc = _as_mac(home, "config", "path")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(support / "imagen.yaml")


def test_on_a_mac_records_go_to_application_support(home):
    proc = _as_mac(home, "generate", "a pear", "--size", "32x32", "-o", "out")
    assert proc.returncode == 0, proc.stderr
    support = home.home / "Library" / "Application Support" / "imagen"
    assert (support / "usage.sqlite3").exists()
    assert not (home.home / ".local").exists()
