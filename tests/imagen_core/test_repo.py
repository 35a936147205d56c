"""The repository keeps its promises: README commands, docs, lint, packaging, exports."""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import imagen
from imagen import hookspecs

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```sh\n(.+?)\n```", text)[:2]


def test_readme_test_command_is_what_ci_runs():
    install, test = _readme_commands()
    assert install.startswith("pip install ./packages/imagen-core && imagen generate")
    assert "hatch run test" in test
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test in ci


def test_ruff_is_clean():
    for args in (["check", "."], ["format", "--check", "."]):
        proc = subprocess.run(
            [sys.executable, "-m", "ruff", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_are_up_to_date():
    generator = _generator()
    for file in {file for file, _ in generator.SECTIONS.values()}:
        text = (ROOT / "docs" / file).read_text()
        assert generator.render(text) == text, f"docs/{file} is stale: run docs/generate.py"


def test_every_exit_code_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text()
    for code in imagen.cli.EXIT_CODES:
        assert f"| {code} |" in text


def test_every_hook_is_documented_with_its_signature():
    text = (ROOT / "docs" / "plugins" / "hooks.md").read_text()
    headings = re.findall(r"^## (\w+)\((.*)\)$", text, flags=re.MULTILINE)
    documented = {name: args for name, args in headings}
    specs = {name: fn for name, fn in vars(hookspecs).items() if name.startswith("imagen_")}
    assert set(documented) == set(specs)
    for name, fn in specs.items():
        assert documented[name] == ", ".join(inspect.signature(fn).parameters), name
        assert (fn.__doc__ and ":param" in fn.__doc__) or not inspect.signature(fn).parameters


def test_all_is_complete_and_exports_exist():
    # Its order is ruff's business (RUF022); its content is ours.
    assert len(set(imagen.__all__)) == len(imagen.__all__)
    for name in imagen.__all__:
        assert hasattr(imagen, name), name
    public = {n for n in vars(imagen) if not n.startswith("_") and n[0].isupper()}
    assert public <= set(imagen.__all__)


def test_each_package_is_a_complete_distribution():
    for package in (ROOT / "packages").iterdir():
        project = tomllib.loads((package / "pyproject.toml").read_text())
        assert project["build-system"]["build-backend"] == "hatchling.build"
        assert (package / "README.md").is_file()
        imports = list((package / "src").iterdir())
        assert len(imports) == 1
        assert (imports[0] / "py.typed").is_file()
        assert (imports[0] / "__init__.py").read_text().count("__version__ = ") == 1
    core = tomllib.loads((ROOT / "packages" / "imagen-core" / "pyproject.toml").read_text())
    assert core["project"]["scripts"] == {"imagen": "imagen.cli:main"}
    assert core["project"]["entry-points"]["imagen"]["builtin"] == "imagen.backends.builtin"


def test_every_conformance_check_is_documented():
    from imagen.testing import BackendConformance

    text = (ROOT / "docs" / "plugins" / "testing.md").read_text()
    checks = [name for name in dir(BackendConformance) if name.startswith("test_")]
    assert len(checks) >= 11
    for name in checks:
        assert f"| `{name}` |" in text, name


def test_docs_link_to_pages_that_exist():
    for page in (ROOT / "docs").rglob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to missing {target}"
    for target in re.findall(r"\]\((docs/[^)#]+)\)", (ROOT / "README.md").read_text()):
        assert (ROOT / target).is_file(), target


def test_starter_config_uses_only_documented_keys(home):
    import yaml

    from imagen.cli.configure import starter_text
    from imagen.config import top_level_keys
    from imagen.output_settings import OUTPUT
    from imagen.preview import PREVIEW
    from imagen.styles import STYLE

    data = yaml.safe_load(starter_text({"mock", "comfyui", "replicate", "openai"}))
    assert set(data) <= set(top_level_keys())
    assert set(data["output"]) <= set(OUTPUT)
    assert set(data["preview"]) <= set(PREVIEW)
    for style in data["styles"].values():
        assert set(style) <= set(STYLE)


def test_starter_examples_use_each_adapters_own_keys():
    import yaml

    from imagen.cli.configure import starter_text
    from imagen_comfyui.settings import SLICE as COMFYUI
    from imagen_openai.settings import SLICE as OPENAI
    from imagen_replicate.settings import SLICE as REPLICATE

    slices = {"comfyui": COMFYUI, "replicate": REPLICATE, "openai": OPENAI, "mock": None}
    backends = yaml.safe_load(starter_text(set(slices)))["backends"]
    assert {b["type"] for b in backends.values()} == set(slices)
    for name, backend in backends.items():
        keys = slices[backend["type"]]
        if keys is not None:
            assert set(backend) - {"type"} <= set(keys), name
