"""Plugin discovery through the ``imagen`` entry-point group, and its failure modes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from imagen import Backend, GeneratedImage, Result, hookimpl
from imagen.backends.drawing import render
from imagen.plugins import call_each, load_failures
from imagen.registry import backend_types


def install_fake_distribution(
    site: Path, name: str, modules: dict[str, str], entry_points: str
) -> None:
    """Lay out a distribution in ``site`` exactly as pip leaves one (dist-info + modules)."""
    dist = site / f"{name.replace('-', '_')}-1.2.3.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(home, tmp_path) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    home.env["PYTHONPATH"] = str(path)
    del home.env["IMAGEN_LOAD_PLUGINS"]  # these tests are about third-party plugins loading
    return path


def test_core_plugins_load_through_entry_points(home):
    data = json.loads(home.run("plugins", "--json", check=True).stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["builtin"]["distribution"] == "imagen-core"
    assert by_name["builtin"]["hooks"] == ["imagen_backend"]
    assert by_name["preview"]["hooks"] == ["imagen_run_finished"]
    assert data["failed"] == []


def test_a_plugin_that_fails_to_import_is_one_line(home, site):
    install_fake_distribution(
        site,
        "imagen-broken",
        {"imagen_broken": "import does_not_exist\n"},
        "[imagen]\nbroken = imagen_broken\n",
    )
    proc = home.run("backends", check=True)
    assert proc.stderr.splitlines() == [
        (
            'imagen: plugin "broken" from imagen-broken failed to load: '
            "ModuleNotFoundError: No module named 'does_not_exist'"
        )
    ]
    assert "mock" in proc.stdout
    assert home.run("generate", "x", "--size", "32x32").returncode == 0


def test_a_misspelt_hook_is_reported_and_the_plugin_left_out(home, site):
    install_fake_distribution(
        site,
        "imagen-typo",
        {
            "imagen_typo": """
            from imagen import hookimpl

            @hookimpl
            def imagen_backends():
                return {}
        """
        },
        "[imagen]\ntypo = imagen_typo\n",
    )
    proc = home.run("plugins", "--json", check=True)
    failed = json.loads(proc.stdout)["failed"]
    assert len(failed) == 1
    assert failed[0]["name"] == "typo"
    assert "unknown hook 'imagen_backends'" in failed[0]["reason"]
    assert len(proc.stderr.splitlines()) == 1


def test_a_plugin_adds_a_command(home, site):
    install_fake_distribution(
        site,
        "imagen-extra",
        {
            "imagen_extra": """
            import click
            from imagen import hookimpl

            @hookimpl
            def imagen_register_commands(cli):
                @cli.command()
                @click.argument("name")
                def hello(name):
                    "Say hello."
                    click.echo(f"hello {name}")
        """
        },
        "[imagen]\nextra = imagen_extra\n",
    )
    assert re.search(r"\n  hello +Say hello\.\n", home.run("--help", check=True).stdout)
    assert home.run("hello", "world", check=True).stdout == "hello world\n"


def test_imagen_load_plugins_restricts_third_party_plugins(home, site):
    install_fake_distribution(
        site,
        "imagen-extra",
        {
            "imagen_extra": "from imagen import hookimpl\n"
            "@hookimpl\ndef imagen_backend():\n    return {'extra': None}\n"
        },
        "[imagen]\nextra = imagen_extra\n",
    )
    home.env["IMAGEN_LOAD_PLUGINS"] = ""
    names = {
        p["name"] for p in json.loads(home.run("plugins", "--json", check=True).stdout)["plugins"]
    }
    assert names == {"builtin", "cloud", "history", "preview", "sections"}
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-extra"
    names = {
        p["name"] for p in json.loads(home.run("plugins", "--json", check=True).stdout)["plugins"]
    }
    assert names == {"builtin", "cloud", "history", "preview", "sections", "extra"}


class _Tiny(Backend):
    reproducible = True

    def generate(self, request, context):
        return Result([GeneratedImage.from_bytes(render("t", 1, 16, 16), "image/png")])


def _reasons() -> list[str]:
    return [str(failure) for failure in load_failures()]


def test_type_clash_keeps_the_first_and_reports(register_plugin):
    class Clash:
        @staticmethod
        @hookimpl
        def imagen_backend():
            return {"mock": _Tiny, "tiny": _Tiny}

    register_plugin(Clash(), "clash")
    types = backend_types()
    assert types["mock"].plugin == "builtin"
    assert types["tiny"].plugin == "clash"
    assert (
        'plugin "clash" failed to load: backend type "mock" is already offered by builtin'
        in _reasons()
    )


def test_a_failing_backend_hook_leaves_other_types(register_plugin):
    class Failing:
        @staticmethod
        @hookimpl
        def imagen_backend():
            raise RuntimeError("boom")

    register_plugin(Failing(), "failing")
    assert "mock" in backend_types()
    assert 'plugin "failing" failed to load: imagen_backend: boom' in _reasons()


def test_steps_run_in_isolation(register_plugin):
    calls = []

    class First:
        @staticmethod
        @hookimpl
        def imagen_run_finished(run):
            calls.append("first")
            raise RuntimeError("upload failed")

    class Second:
        @staticmethod
        @hookimpl
        def imagen_run_finished(run, error):
            calls.append(("second", error))

    register_plugin(First(), "first")
    register_plugin(Second(), "second")
    failures = call_each("imagen_run_finished", run=None, outcome=None, error=None)
    assert sorted(map(str, calls)) == ["('second', None)", "first"]
    assert [(f.plugin, str(f.error)) for f in failures] == [("first", "upload failed")]


def test_a_failing_image_step_is_exit_6_and_keeps_the_image(home, site):
    install_fake_distribution(
        site,
        "imagen-uploader",
        {
            "imagen_uploader": """
            from imagen import hookimpl, ImagenError

            @hookimpl
            def imagen_image_saved(image, run):
                image.update_sidecar(cloud={"bucket": "b"})
                raise ImagenError("bucket is full")
        """
        },
        "[imagen]\nuploader = imagen_uploader\n",
    )
    proc = home.run("generate", "x", "--size", "32x32")
    assert proc.returncode == 6
    path = Path(proc.stdout.strip())
    assert path.is_file()
    assert json.loads(path.with_suffix(".json").read_text())["cloud"] == {"bucket": "b"}
    assert "imagen: image_saved failed: uploader: bucket is full" in proc.stderr


# -- an out-of-tree plugin, built and pip-installed -------------------------------------

PLUGIN_PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "imagen-hello"
version = "0.3.0"
dependencies = ["imagen-core"]

[project.entry-points.imagen]
hello = "imagen_hello.plugin"

[tool.hatch.build.targets.wheel]
packages = ["imagen_hello"]
"""

PLUGIN_MODULE = '''
"""Registers the hello backend without importing it."""
from imagen import hookimpl


def hello(config):
    """Solid-colour squares, from an out-of-tree package."""
    from imagen_hello.backend import HelloBackend

    return HelloBackend(config)


@hookimpl
def imagen_backend():
    return {"hello": hello}
'''

BACKEND_MODULE = """
import io

from PIL import Image

from imagen import Backend, GeneratedImage, Result


class HelloBackend(Backend):
    def __init__(self, config):
        super().__init__(config)
        self.colour = config.get("colour", str, "teal")

    def generate(self, request, context):
        out = io.BytesIO()
        Image.new("RGB", (request.width or 24, request.height or 24), self.colour).save(out, "PNG")
        return Result([GeneratedImage.from_bytes(out.getvalue(), "image/png")],
                      {"model": "hello-1", "ignored": ["seed"]})
"""


def _install_hello(tmp_path: Path, target: Path) -> None:
    """pip-install the out-of-tree ``imagen-hello`` package into ``target``."""
    source = tmp_path / "imagen-hello"
    (source / "imagen_hello").mkdir(parents=True)
    (source / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (source / "imagen_hello" / "__init__.py").write_text("")
    (source / "imagen_hello" / "plugin.py").write_text(PLUGIN_MODULE)
    (source / "imagen_hello" / "backend.py").write_text(BACKEND_MODULE)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_out_of_tree_plugin_is_discovered_and_used(home, tmp_path):
    target = tmp_path / "installed"
    _install_hello(tmp_path, target)
    home.env["PYTHONPATH"] = str(target)
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-hello"

    types = json.loads(home.run("backends", "--json", check=True).stdout)["types"]
    hello = next(t for t in types if t["name"] == "hello")
    assert (hello["distribution"], hello["version"]) == ("imagen-hello", "0.3.0")
    assert hello["summary"] == "Solid-colour squares, from an out-of-tree package."

    home.write_config("backends:\n  sq:\n    type: hello\n    colour: orange\n")
    proc = home.run("generate", "square", "--size", "20x10", check=True)
    path = Path(proc.stdout.strip())
    from PIL import Image

    with Image.open(path) as image:
        assert image.size == (20, 10)
        assert image.getpixel((0, 0)) == (255, 165, 0)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["backend_type"] == "hello"
    assert record["metadata"]["ignored"] == ["seed"]
    assert record["reproducible"] is False

    # Loading plugins must not import the plugin's backend module (its SDK would come with it).
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys, imagen.cli; imagen.cli.build(); "
                "from imagen.registry import backend_types; backend_types(); "
                "print('imagen_hello.backend' in sys.modules)"
            ),
        ],
        env=home.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"


def test_secrets_are_scrubbed_from_sidecars_and_errors(home, register_plugin, monkeypatch):
    from imagen.config import load_config
    from imagen.pipeline import generate

    monkeypatch.setenv("LEAKY_TOKEN", "tok-9f8e7d6c5b4a")

    class Leaky(Backend):
        def __init__(self, config):
            super().__init__(config)
            self.token = config.secret("token_env")

        def generate(self, request, context):
            if request.options.get("fail"):
                raise RuntimeError(f"401 for Authorization: Bearer {self.token}")
            data = render("t", 1, 16, 16)
            return Result([GeneratedImage.from_bytes(data, "image/png")], {"echo": self.token})

    class Plugin:
        @staticmethod
        @hookimpl
        def imagen_backend():
            return {"leaky": Leaky}

    register_plugin(Plugin(), "leaky")
    home.write_config("backends:\n  l:\n    type: leaky\n    token_env: LEAKY_TOKEN\n")
    from imagen import PermanentBackendError, Request

    outcome = generate(load_config(), Request("x", seed=1))
    saved = outcome.images[0]
    assert "tok-9f8e7d6c5b4a" not in saved.sidecar.read_text()
    assert "tok-9f8e7d6c5b4a" not in saved.path.read_bytes().decode("latin-1")
    assert saved.record["metadata"]["echo"] == "***"
    with pytest.raises(PermanentBackendError) as info:
        generate(load_config(), Request("x", options={"fail": True}))
    assert (
        str(info.value) == 'backend "l": unexpected RuntimeError: 401 for Authorization: Bearer ***'
    )


def test_the_plugin_list_is_cached_until_the_installed_packages_change(home, tmp_path):
    target = tmp_path / "installed"
    target.mkdir()
    home.env.update(
        PYTHONPATH=str(target),
        IMAGEN_LOAD_PLUGINS="imagen-hello",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )

    def types() -> set[str]:
        listed = json.loads(home.run("backends", "--json", check=True).stdout)["types"]
        return {t["name"] for t in listed}

    assert "hello" not in types()
    (cache,) = (tmp_path / "cache" / "imagen").glob("entry-points-*.json")
    written = cache.stat().st_mtime_ns
    assert "hello" not in types()
    assert cache.stat().st_mtime_ns == written  # nothing changed: read from the cache

    _install_hello(tmp_path, target)
    assert "hello" in types()  # an install changes the key
    cache.write_text("{not json")
    assert "hello" in types()  # a broken cache is only read past

    (dist_info,) = target.glob("imagen_hello-*.dist-info")
    shutil.rmtree(dist_info)
    assert "hello" not in types()  # an uninstall changes it too
