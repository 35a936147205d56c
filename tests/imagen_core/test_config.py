"""imagen.yaml: search order, defaults, validation errors, and the config commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from imagen import ConfigError
from imagen.config import find_config_file, load_config


def test_defaults_without_any_file(home):
    config = load_config()
    assert config.file is None
    assert config.default_backend == "mock"
    assert config.backends["mock"].type == "mock"
    assert config.output.directory == home.pictures
    assert config.output.write_metadata_json is True
    assert config.preview.enabled is False


def test_search_order(home, monkeypatch):
    user = home.home / ".config" / "imagen" / "imagen.yaml"
    user.parent.mkdir(parents=True)
    user.write_text("default_backend: mock\n")
    assert find_config_file() == (user, "the user config directory")
    local = home.write_config("styles: {}\n")
    assert find_config_file()[0] == local
    other = home.root / "elsewhere.yaml"
    other.write_text("{}\n")
    monkeypatch.setenv("IMAGEN_CONFIG", str(other))
    assert find_config_file()[0] == other
    explicit = home.root / "explicit.yaml"
    explicit.write_text("{}\n")
    assert find_config_file(explicit)[0] == explicit


def test_named_file_that_is_missing_is_an_error(home, monkeypatch):
    monkeypatch.setenv("IMAGEN_CONFIG", str(home.root / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"named by \$IMAGEN_CONFIG"):
        load_config()
    with pytest.raises(ConfigError, match="given with --config"):
        load_config(home.root / "absent.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("outptu:\n  directory: x\n", ":1: outptu: unknown top-level key"),
        ("output:\n  naming: 5\n", ":2: output.naming: must be a string, not 5"),
        (
            "output:\n  write_metadata_json: yes-please\n",
            ":2: output.write_metadata_json: must be true or false",
        ),
        ("output:\n  colour: red\n", ":2: output.colour: unknown key (known: directory, naming"),
        ("backends:\n  gpu:\n    base_url: x\n", ":2: backends.gpu: missing `type`"),
        ("backends:\n  gpu:\n    type: [1]\n", ":3: backends.gpu.type: must be a string"),
        ("backends:\n  gpu: comfyui\n", ":2: backends.gpu: must be a mapping with a `type` key"),
        (
            "default_backend: nope\n",
            ':1: default_backend: no backend instance "nope" (configured: mock)',
        ),
        ("styles:\n  a:\n    size: big\n", ":3: styles.a.size: size must look like 1024x768"),
        ("styles:\n  a:\n    steps: 0\n", ":3: styles.a.steps: must be 1 or more"),
        (
            "output:\n  naming: '{date}/{prompt}.png'\n",
            ":2: output.naming: unknown placeholder {prompt}",
        ),
        (
            "output:\n  naming: '../{slug}.png'\n",
            ":2: output.naming: must not leave the output directory",
        ),
        ("output:\n  naming: '/tmp/{slug}.png'\n", ":2: output.naming: must be relative"),
        (
            "output:\n  directory: $NOPE_DIR/x\n",
            ":2: output.directory: environment variable NOPE_DIR is not set",
        ),
        ("- a\n- b\n", "the file must hold a mapping"),
        ("worker: 5\n", ":1: worker: must be a mapping"),
    ],
)
def test_errors_name_file_line_and_key(home, text, expected):
    path = home.write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_yaml_syntax_error_has_its_line(home):
    path = home.write_config("output:\n  directory: [unclosed\nstyles: {}\n")
    with pytest.raises(ConfigError) as info:
        load_config()
    message = str(info.value)
    assert message.startswith(f"{path}:")
    assert "YAML syntax error" in message
    assert info.value.line in (2, 3)


def test_output_directory_expands_home_and_variables(home, monkeypatch):
    monkeypatch.setenv("ALBUM", "summer")
    home.write_config("output:\n  directory: ~/art/$ALBUM\n")
    assert load_config().output.directory == home.home / "art" / "summer"


def test_relative_output_directory_is_relative_to_the_file(home):
    path = home.write_config("output:\n  directory: renders\n")
    assert load_config().output.directory == path.parent / "renders"


def test_backend_slice_reaches_the_adapter_without_type(home):
    home.write_config(
        """
        backends:
          gpu:
            type: comfyui
            base_url: http://box:8188
            workflow: ./flux.json
        """
    )
    config = load_config()
    gpu = config.backend("gpu")
    assert gpu.type == "comfyui"
    assert dict(gpu.settings) == {"base_url": "http://box:8188", "workflow": "./flux.json"}
    assert gpu.lines["base_url"] == 4
    assert config.default_backend == "gpu"  # the first configured instance
    assert "mock" in config.backends  # the built-in instance stays available


def test_plugin_sections_are_kept_with_their_lines(home):
    home.write_config("worker:\n  concurrency: 2\n")
    section = load_config().sections["worker"]
    assert section.data == {"concurrency": 2}
    assert section.lines["concurrency"] == 2


# -- the commands ------------------------------------------------------------------


def test_unknown_backend_type_names_the_installed_ones(home):
    path = home.write_config("backends:\n  gpu:\n    type: comfyiu\n")
    proc = home.run("generate", "x", "--backend", "gpu")
    assert proc.returncode == 3
    assert proc.stderr.strip() == (
        f'imagen: backend "gpu": unknown backend type "comfyiu" (installed: mock) '
        f"({path}:3, backends.gpu.type)"
    )
    assert "Traceback" not in proc.stderr


def test_constructor_error_shows_backend_name_and_reason(home):
    path = home.write_config("backends:\n  small:\n    type: mock\n    width: 3\n")
    proc = home.run("generate", "x")
    assert proc.returncode == 3
    assert proc.stderr.strip() == (
        f'imagen: backend "small": must be between 16 and 4096, not 3 ({path}:4, backends.small.width)'
    )


def test_config_check_reports_each_instance(home):
    home.write_config(
        """
        backends:
          good:
            type: mock
          bad:
            type: mock
            format: gif
          missing:
            type: nowhere
        """
    )
    proc = home.run("config", "check")
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    assert "  ok    good (mock)" in lines
    assert any(
        line.startswith("  FAIL  bad (mock): must be one of png, jpeg, webp") for line in lines
    )
    assert any('FAIL  missing (nowhere): unknown backend type "nowhere"' in line for line in lines)
    assert "  ok    mock (mock)" in lines
    assert "imagen: 2 of 4 backend instance(s) failed" in proc.stderr


def test_config_check_passes_on_defaults(home):
    proc = home.run("config", "check", check=True)
    assert "ok    mock (mock)" in proc.stdout


def test_config_show_redacts_literal_secrets(home):
    home.write_config(
        """
        backends:
          hosted:
            type: mock
            api_key: sk-literal-secret-123456
            api_key_env: OPENAI_API_KEY
            headers:
              Authorization: Bearer abcdef123456
        """
    )
    proc = home.run("config", "show", check=True)
    assert "sk-literal-secret" not in proc.stdout
    assert "abcdef123456" not in proc.stdout
    data = yaml.safe_load(proc.stdout)
    hosted = data["backends"]["hosted"]
    assert hosted["api_key"] == "***"
    assert hosted["api_key_env"] == "OPENAI_API_KEY"  # a variable's name is not a secret
    assert hosted["headers"]["Authorization"] == "***"
    assert data["output"]["naming"] == "{date}-{slug}-{seed}.{ext}"


def test_config_path(home):
    none = home.run("config", "path", check=True)
    assert none.stdout == ""  # $(imagen config path) is empty, not "None" or "none (...)"
    assert none.stderr.strip() == (
        "imagen: no config file found: built-in defaults "
        "(imagen init writes one; --all shows where imagen looks)"
    )
    path = home.write_config("{}\n")
    assert home.run("config", "path", check=True).stdout.strip() == str(path)
    listing = home.run("config", "path", "--all", check=True).stdout
    assert f"* current directory:      {path}" in listing


def test_init_writes_a_starter_that_loads_and_checks(home):
    proc = home.run("init", check=True)
    path = home.cwd / "imagen.yaml"
    assert proc.stdout.strip() == f"wrote {path}"
    text = path.read_text()
    for section in ("default_backend:", "backends:", "styles:", "output:", "preview:"):
        assert section in text
    for example in ("type: comfyui", "type: replicate", "type: openai"):
        assert f"#   {example}" in text  # commented out: those types are not installed
    config = load_config()
    assert set(config.styles) == {"cinematic", "poster"}
    assert config.styles["poster"].width == 768
    assert home.run("config", "check").returncode == 0
    again = home.run("init")
    assert again.returncode == 2
    assert "already exists (use --force" in again.stderr
    assert home.run("init", "--force").returncode == 0


def test_init_activates_examples_of_installed_types(home, register_plugin):
    from imagen.cli.configure import starter_text

    text = starter_text({"mock", "comfyui"})
    assert "\n  home-gpu:\n    type: comfyui\n" in text
    assert "#   type: openai" in text


def test_init_user(home):
    home.run("init", "--user", check=True)
    assert (Path(home.env["XDG_CONFIG_HOME"]) / "imagen" / "imagen.yaml").is_file()
    assert not os.path.exists(home.cwd / "imagen.yaml")


def test_styles_and_backends_listings(home):
    assert "No styles configured" in home.run("styles", check=True).stdout
    home.write_config(
        """
        default_backend: draft
        backends:
          draft:
            type: mock
          gpu:
            type: comfyui
        styles:
          noir:
            description: black and white
            size: 640x480
            steps: 20
        """
    )
    lines = home.run("styles", check=True).stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "STEPS", "ADDS"]
    assert lines[1].split() == ["noir", "640x480", "20", "black", "and", "white"]
    listing = home.run("backends", check=True).stdout
    assert "  mock  imagen-core" in listing
    assert "  * draft  mock" in listing
    assert "    gpu    comfyui  type not installed" in listing
    data = json.loads(home.run("styles", "--json", check=True).stdout)
    assert data[0]["width"] == 640
