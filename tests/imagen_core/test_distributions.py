"""Every distribution builds, passes twine's checks, and installs by name from its files.

What a user gets from ``pip install imagen-core imagen-comfyui`` once the packages are
published, tried before they are: each package's wheel and sdist built as ``hatch build``
builds them, checked as PyPI checks an upload, then installed by name into a fresh venv
from those files only (``--no-index --find-links``) beside the wheels of their declared
dependencies, and run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p for p in (ROOT / "packages").iterdir() if (p / "pyproject.toml").is_file())


def _run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, **kwargs
    )
    assert proc.returncode == 0, f"{args}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """Every package's wheel and sdist, built by hatchling (what ``hatch build`` runs)."""
    out = tmp_path_factory.mktemp("dist")
    for package in PACKAGES:
        _run(sys.executable, "-m", "hatchling", "build", "-d", out, cwd=package)
    return out


def _name(package: Path) -> str:
    return tomllib.loads((package / "pyproject.toml").read_text())["project"]["name"]


def test_each_package_builds_a_wheel_and_an_sdist(dist):
    from imagen import __version__

    for package in PACKAGES:
        stem = _name(package).replace("-", "_")
        (wheel,) = dist.glob(f"{stem}-*.whl")
        (sdist,) = dist.glob(f"{stem}-*.tar.gz")
        assert wheel.name.startswith(f"{stem}-{__version__}-")  # one version for all
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
        module = next((package / "src").iterdir()).name
        assert f"{module}/py.typed" in names
        assert any(n.endswith(".dist-info/entry_points.txt") for n in names)
        with tarfile.open(sdist) as archive:
            members = archive.getnames()
        assert any(m.endswith("/README.md") for m in members)
        assert any(m.endswith(f"/src/{module}/__init__.py") for m in members)


def test_twine_accepts_every_file(dist):
    files = sorted(dist.iterdir())
    assert len(files) == 2 * len(PACKAGES)
    proc = _run(sys.executable, "-m", "twine", "check", "--strict", *files)
    assert proc.stdout.count("PASSED") == len(files), proc.stdout


def test_core_and_comfyui_install_by_name_from_the_built_files_and_run(dist, tmp_path):
    # The dependencies' own wheels, resolved as pip resolves them for a user (the index
    # is the registry); imagen's own distributions can only come from dist.
    wheelhouse = tmp_path / "wheelhouse"
    _run(
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--dest",
        wheelhouse,
        "--find-links",
        dist,
        "imagen-core",
        "imagen-comfyui",
    )
    for copied in wheelhouse.glob("imagen*"):  # what pip took of ours came from dist
        assert copied.read_bytes() == (dist / copied.name).read_bytes()
        copied.unlink()
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)
    python = fresh / "bin" / "python"
    # Only the built files: no index, no pip configuration, no find-links of the machine.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "IMAGEN_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    _run(
        python,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-index",
        "--find-links",
        dist,
        "--find-links",
        wheelhouse,
        "imagen-core",
        "imagen-comfyui",
        env=env,
    )
    installed = _run(python, "-m", "pip", "list", "--format=freeze", env=env).stdout
    assert "imagen-core==" in installed
    assert "imagen-comfyui==" in installed
    assert "imagen-worker" not in installed  # by name: exactly what was asked, and its needs

    home = tmp_path / "home"
    home.mkdir()
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
    )
    imagen = fresh / "bin" / "imagen"
    made = _run(imagen, "generate", "a lighthouse at dusk", "--size", "64x64", cwd=home, env=env)
    image = Path(made.stdout.strip())
    assert image.is_file()
    assert image.is_relative_to(home / "Pictures" / "imagen")
    listing = _run(imagen, "backends", cwd=home, env=env).stdout
    assert "comfyui  imagen-comfyui" in listing
    assert "mock     imagen-core" in listing
    # The package itself, not the workspace's sources, was run.
    where = _run(python, "-c", "import imagen_comfyui; print(imagen_comfyui.__file__)", env=env)
    assert where.stdout.startswith(str(fresh))


def test_one_version_and_core_ranges_that_admit_it():
    from packaging.requirements import Requirement

    from imagen import __version__

    for package in PACKAGES:
        module = next((package / "src").iterdir())
        assert f'__version__ = "{__version__}"' in (module / "__init__.py").read_text()
        project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
        extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
        for requirement in map(Requirement, [*project.get("dependencies", []), *extras]):
            if requirement.name.startswith("imagen-"):
                assert requirement.specifier.contains(__version__), (package.name, requirement)


def _install_lines() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *ROOT.glob("packages/*/README.md")]
    found = []
    for page in pages:
        for line in page.read_text(encoding="utf-8").splitlines():
            command = re.search(r"pip install ([^`]+)", line)  # to the end of inline code
            if command and "hatch" not in command.group(1):
                found.append((f"{page.relative_to(ROOT)}", command.group(1)))
    return found


def test_every_install_line_in_the_docs_installs_from_a_clone():
    """Nothing is on PyPI yet: every line names the packages' folders (docs/releasing.md)."""
    lines = _install_lines()
    assert len(lines) >= 12
    for page, line in lines:
        if line.startswith(("-e", "{{dist}}")) or "imagen-acme" in line:
            continue  # an adapter author's own package (docs/plugins/tutorial.md)
        command = re.split(r"#|&&|;", line)[0]  # the install, not what follows it
        words = command.replace("`", "").replace("'", "").split()
        assert words, (page, line)
        for word in words:
            assert word.startswith("./packages/imagen-"), (page, line)
            folder = ROOT / word.split("[")[0]
            assert (folder / "pyproject.toml").is_file(), (page, line)
        if "./packages/imagen-core" not in words[0]:
            pytest.fail(f"{page}: {line}: name imagen-core first, in the same command")


def test_the_comfyui_install_line_works_as_written_in_a_fresh_venv(tmp_path):
    """docs/backends/comfyui.md's line, run at the root of the clone, then imagen itself."""
    (line,) = [
        line.split("#")[0].strip()
        for page, line in _install_lines()
        if page == "docs/backends/comfyui.md"
    ]
    fresh = tmp_path / "venv"
    venv.create(fresh, with_pip=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "IMAGEN_"))}
    env["PATH"] = f"{fresh / 'bin'}{os.pathsep}{env['PATH']}"
    _run("bash", "-c", f"pip install --quiet {line}", cwd=ROOT, env=env)
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    listing = _run(fresh / "bin" / "imagen", "backends", cwd=home, env=env).stdout
    assert "comfyui  imagen-comfyui" in listing
