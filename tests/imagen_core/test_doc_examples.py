"""Every imagen.yaml example in the README and docs/ passes ``imagen config check`` as written."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
    *sorted((ROOT / "packages").glob("*/README.md")),
]
# A file an example names, stood in by a real one of the same kind.
STAND_INS = {".json": ROOT / "tests" / "imagen_comfyui" / "workflows" / "sdxl_api.json"}


def _examples() -> list[tuple[str, str, str]]:
    """(page:line, the page, the block) for every ```yaml block."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        # A fence may be indented (inside a list item): its block is, by as much.
        for match in re.finditer(r"^( *)```ya?ml\n(.*?)^\1```", text, re.DOTALL | re.MULTILINE):
            line = text[: match.start()].count("\n") + 1
            block = textwrap.dedent(match.group(2)) if match.group(1) else match.group(2)
            found.append((f"{page.relative_to(ROOT)}:{line}", text, block))
    return found


EXAMPLES = _examples()


def _fragment(block: str) -> bool:
    """A block that continues the example before it (its first key is indented)."""
    first = next(line for line in block.splitlines() if line.strip() and not line.startswith("#"))
    return first.startswith(" ")


def test_there_are_examples_to_check():
    assert len(EXAMPLES) >= 14
    assert [where for where, _, block in EXAMPLES if _fragment(block)] == [
        "docs/backends/comfyui.md:151",  # inputs: under the example before it
        "docs/backends/comfyui.md:166",  # the input images' inputs: under the same
    ]


@pytest.mark.parametrize(
    ("where", "page", "block"),
    [example for example in EXAMPLES if not _fragment(example[2])],
    ids=[where for where, _, block in EXAMPLES if not _fragment(block)],
)
def test_the_example_passes_config_check(home, where, page, block):
    del home.env["IMAGEN_LOAD_PLUGINS"]  # every installed package: the examples use them all
    # The environment variables the page names (OPENAI_API_KEY, ...), set to dummy values.
    # (Not imagen's own, IMAGEN_CONFIG and the like: they would change what is checked.)
    for name in set(re.findall(r"\b([A-Z][A-Z0-9]*_[A-Z0-9_]+)\b", page)):
        if not name.startswith(("IMAGEN_", "XDG_")):
            home.env.setdefault(name, f"dummy-{name.lower()}")
    config = home.write_config(block)
    for value in _values(yaml.safe_load(block)):
        stand_in = STAND_INS.get(Path(value).suffix)
        if stand_in is not None and not Path(value).is_absolute():
            (config.parent / value).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(stand_in, config.parent / value)
    proc = home.run("config", "check")
    assert proc.returncode == 0, f"{where}:\n{proc.stdout}{proc.stderr}"


def test_a_fragment_continues_a_valid_example():
    for index, (where, _, block) in enumerate(EXAMPLES):
        if _fragment(block):
            assert isinstance(yaml.safe_load(block), dict), where
            # the example it continues: the nearest whole one before it, on the same page
            before = [w for w, _, b in EXAMPLES[:index] if not _fragment(b)]
            assert before, where
            assert before[-1].split(":")[0] == where.split(":")[0], where


def _values(data: object) -> list[str]:
    if isinstance(data, dict):
        return [v for item in data.values() for v in _values(item)]
    if isinstance(data, list):
        return [v for item in data for v in _values(item)]
    return [data] if isinstance(data, str) else []


def test_the_readme_example_fails_without_the_model_it_needs(home):
    """The check is real: the README's example as it was (no model:) is refused."""
    del home.env["IMAGEN_LOAD_PLUGINS"]
    home.write_config(
        "backends:\n  home-gpu:\n    type: comfyui\n    base_url: http://gpu-box:8188\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "imagen", "config", "check"],
        cwd=home.cwd,
        env=home.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3
    assert '"model" is required' in proc.stdout
