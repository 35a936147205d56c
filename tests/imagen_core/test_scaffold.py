"""``imagen new-adapter``: the package it writes installs, registers and passes the suite."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "packages" / "imagen-core"


def test_bad_names_and_existing_directories_are_refused(home):
    proc = home.run("new-adapter", "Bad Name")
    assert proc.returncode == 2
    assert "is not a valid backend type name" in proc.stderr
    home.run("new-adapter", "acme", check=True)
    again = home.run("new-adapter", "acme")
    assert again.returncode == 2
    assert "imagen-acme already exists" in again.stderr


def test_names_are_derived_from_the_type(home):
    proc = home.run("new-adapter", "stability-ai", "-d", "out", check=True)
    root = home.cwd / "out" / "imagen-stability-ai"
    assert proc.stdout.startswith(f"wrote {root.relative_to(home.cwd)}")
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "imagen-stability-ai"' in pyproject
    assert 'stability-ai = "imagen_stability_ai.plugin"' in pyproject
    assert '"imagen-core>=0.1,<0.2"' in pyproject
    backend = (root / "src" / "imagen_stability_ai" / "backend.py").read_text()
    assert "class StabilityAiBackend(Backend):" in backend
    assert '"STABILITY_AI_API_TOKEN"' in backend
    assert (root / "src" / "imagen_stability_ai" / "py.typed").is_file()
    assert "{{" not in "".join(p.read_text() for p in root.rglob("*") if p.is_file())


def test_scaffold_installs_in_a_fresh_venv_and_passes_the_suite(home, tmp_path):
    home.run("new-adapter", "acme", "-d", str(tmp_path), check=True)
    package = tmp_path / "imagen-acme"
    lint = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", str(package)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    env = {
        k: v
        for k, v in home.env.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "IMAGEN_LOAD_PLUGINS")
    }
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def pip(*args: str) -> None:
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr

    pip(str(CORE))
    pip("-e", f"{package}[test]")

    listing = subprocess.run(
        [str(env_dir / "bin" / "imagen"), "backends"],
        env=env,
        cwd=home.cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "acme  imagen-acme 0.1.0  Acme image generation over its HTTP API." in listing.stdout

    tests = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA"],
        cwd=package,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "37 passed" in tests.stdout
    assert (
        "PASSED tests/test_backend.py::TestAcmeConformance::test_cancellation_mid_run"
        in tests.stdout
    )
