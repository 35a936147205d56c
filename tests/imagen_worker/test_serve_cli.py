"""``imagen serve`` and ``imagen serve-key`` as a user runs them: real processes."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import openai


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _key_for(home, owner: str) -> tuple[str, str]:
    made = home.run("serve-key", owner, check=True)
    key = re.search(r"^\s+(imk_\S+)$", made.stdout, re.MULTILINE).group(1)
    line = re.search(rf'^\s+"([0-9a-f]{{64}})": {owner}$', made.stdout, re.MULTILINE).group(1)
    return key, line


def test_serve_with_worker_generates_for_the_openai_sdk_and_stops_on_sigterm(home, db_url):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    key, digest = _key_for(home, "alice")
    home.write_config(
        f"""
        output:
          directory: {home.root / "out"}
        serve:
          api_keys:
            "{digest}": alice
        """
    )
    port = _free_port()
    command = ["serve", "--with-worker", "--port", str(port), "--database-url", db_url]
    server = subprocess.Popen(
        [sys.executable, "-m", "imagen", *command],
        cwd=home.cwd,
        env=home.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/openapi.json").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, "imagen serve did not start"
            time.sleep(0.1)
        with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
            result = client.images.generate(model="mock", prompt="a lighthouse", size="64x64")
        assert len(result.data) == 1
        assert (home.root / "out").is_dir()
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert f"imagen serve: {url}/ (the gallery), {url}/v1 (the API)" in err
    assert key not in out + err  # the key itself is never printed by the server


def test_a_bad_serve_section_is_a_config_error_naming_file_line_and_key(home):
    home.env["IMAGEN_LOAD_PLUGINS"] = "imagen-worker"
    home.write_config("serve:\n  max_images: 0\n")
    proc = home.run("serve")
    assert proc.returncode == 3
    assert "imagen.yaml" in proc.stderr
    assert "line 2" in proc.stderr or ":2:" in proc.stderr
    assert "serve.max_images: must be at least 1, not 0" in proc.stderr
    assert "Traceback" not in proc.stderr
