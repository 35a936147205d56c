"""``imagen config check --online`` and ``imagen models`` against the ComfyUI stand-in."""

from __future__ import annotations

import json

from comfy_nodes import CHECKPOINTS, LORAS


def test_config_check_online_says_comfyui_answers_and_has_the_model(gpu_home, comfy):
    proc = gpu_home.run("config", "check", "--online", check=True)
    assert (
        "  ok    gpu (comfyui): ComfyUI 0.3.64 answers on stand-in; "
        "it has sd_xl_base_1.0.safetensors\n"
    ) in proc.stdout
    assert "  ok    mock (mock): offline: nothing to contact" in proc.stdout
    assert comfy.received == []  # nothing was queued: nothing ran


def test_a_missing_checkpoint_and_a_server_down_fail_the_check(gpu_home, comfy):
    gpu_home.write_config(
        f"""
        backends:
          gpu:
            type: comfyui
            base_url: {comfy.url}
            model: not-there.safetensors
          down:
            type: comfyui
            base_url: http://127.0.0.1:9
            model: x.safetensors
        """
    )
    proc = gpu_home.run("config", "check", "--online")
    assert proc.returncode == 3
    assert (
        "  FAIL  gpu (comfyui): ComfyUI at "
        f"{comfy.url} has no checkpoint 'not-there.safetensors' (4 (CheckpointLoaderSimple"
    ) in proc.stdout
    assert "it has: sd_xl_base_1.0.safetensors, v1-5-pruned-emaonly.safetensors" in proc.stdout
    assert "  FAIL  down (comfyui): cannot reach ComfyUI at http://127.0.0.1:9" in proc.stdout
    assert proc.stderr == "imagen: 2 of 3 backend instance(s) failed\n"
    offline = gpu_home.run("config", "check")  # without --online: only built
    assert offline.returncode == 0


def test_models_lists_the_servers_files_and_marks_the_one_in_use(gpu_home, comfy):
    listing = json.loads(gpu_home.run("models", "gpu", "--json", check=True).stdout)
    models = listing["backends"]["gpu"]
    checkpoints = [m["name"] for m in models if m["kind"] == "checkpoint"]
    assert checkpoints == CHECKPOINTS
    assert [m["name"] for m in models if m["kind"] == "lora"] == LORAS
    assert [m["name"] for m in models if m["current"]] == ["sd_xl_base_1.0.safetensors"]
    text = gpu_home.run("models", "gpu", check=True).stdout.splitlines()
    assert text[0] == "gpu (comfyui):"
    assert "  * checkpoint  sd_xl_base_1.0.safetensors  (CheckpointLoaderSimple)" in text
    assert comfy.received == []
