"""The loopback ComfyUI answers as the real server does (``shared/protocols.md``).

These drive the stand-in with plain httpx and websocket-client, no adapter, so that the
adapter's tests stand on a server that is as strict as the real one, never kinder.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest
import websocket

WORKFLOWS = Path(__file__).parent / "workflows"


def _graph(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


def _run(comfy, graph: dict) -> tuple[httpx.Response, list[dict]]:
    """Submit ``graph`` with a socket open; the answer and the run's text frames."""
    client_id = str(uuid.uuid4())
    socket = websocket.create_connection(f"ws://127.0.0.1:{comfy.port}/ws?clientId={client_id}")
    socket.settimeout(10)
    try:
        answer = httpx.post(f"{comfy.url}/prompt", json={"prompt": graph, "client_id": client_id})
        frames: list[dict] = []
        if answer.status_code != 200:
            return answer, frames
        while True:
            opcode, data = socket.recv_data()
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            frame = json.loads(data)
            frames.append(frame)
            if frame["type"] == "executing" and frame["data"]["node"] is None:
                return answer, frames
    finally:
        socket.close()


def _kinds(frames: list[dict], kind: str) -> list[dict]:
    return [frame["data"] for frame in frames if frame["type"] == kind]


def test_outputs_that_validate_run_and_the_others_are_named(comfy):
    answer, frames = _run(comfy, _graph("two_outputs.json"))
    assert answer.status_code == 200
    body = answer.json()
    assert set(body["node_errors"]) == {"14"}
    error = body["node_errors"]["14"]
    assert error["dependent_outputs"] == ["13"]
    assert error["class_type"] == "CheckpointLoaderSimple"
    assert [e["type"] for e in error["errors"]] == ["value_not_in_list"]
    ran = [data["node"] for data in _kinds(frames, "executing") if data["node"] is not None]
    assert "9" in ran
    assert not {"11", "12", "13", "14", "20"} & set(ran)  # the bad branch, the leftover node
    entry = comfy.history[body["prompt_id"]]
    assert list(entry["outputs"]) == ["9"]
    assert entry["prompt"][4] == ["9"]  # the outputs it executes


def test_a_400_only_when_no_output_validates(comfy):
    graph = _graph("two_outputs.json")
    graph["4"]["inputs"]["ckpt_name"] = "gone.safetensors"
    answer, _ = _run(comfy, graph)
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert sorted(body["node_errors"]["4"]["dependent_outputs"]) == ["13", "9"]
    assert body["node_errors"]["14"]["dependent_outputs"] == ["13"]
    assert comfy.pending == []
    assert comfy.running is None


def test_an_unknown_class_rejects_the_graph_even_unconnected(comfy):
    graph = _graph("two_outputs.json")
    graph["20"]["class_type"] = "NoSuchNode"
    answer, _ = _run(comfy, graph)
    assert answer.status_code == 400
    assert answer.json()["error"] == {
        "type": "invalid_prompt",
        "message": "Cannot execute because node NoSuchNode does not exist.",
        "details": "Node ID '#20'",
        "extra_info": {},
    }


def test_caching_is_per_node(comfy):
    graph = _graph("two_outputs.json")
    _, first = _run(comfy, graph)
    assert _kinds(first, "execution_cached")[0]["nodes"] == []
    graph["3"]["inputs"]["seed"] = 2  # only the sampler and what follows it change
    _, second = _run(comfy, graph)
    assert sorted(_kinds(second, "execution_cached")[0]["nodes"]) == ["4", "5", "6", "7"]
    ran = [data["node"] for data in _kinds(second, "executing") if data["node"] is not None]
    assert ran == ["3", "8", "9"]
    _, third = _run(comfy, graph)  # the same graph again: nothing runs
    assert sorted(_kinds(third, "execution_cached")[0]["nodes"]) == [
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "9",
    ]
    assert [data["node"] for data in _kinds(third, "executing")] == [None]
    announced = _kinds(third, "executed")
    assert announced == [
        {**_kinds(second, "executed")[0], "prompt_id": announced[0]["prompt_id"]}
    ]  # the earlier file, re-announced


def test_runtime_errors_are_multi_line_and_come_from_any_node(comfy):
    graph = _graph("sdxl_api.json")
    graph["9"]["inputs"]["filename_prefix"] = "../escape"
    _, frames = _run(comfy, graph)
    (error,) = _kinds(frames, "execution_error")
    assert error["node_type"] == "SaveImage"
    assert error["exception_type"] == "Exception"
    message = error["exception_message"]
    assert message.startswith(
        "**** ERROR: Saving image outside the output folder is not allowed.\n full_output_folder: "
    )
    assert message.endswith("\n")
    assert len(message.splitlines()) == 4
    assert set(error["executed"]) == {"3", "4", "5", "6", "7", "8"}
    assert error["current_inputs"]["images"][0].startswith("tensor(")
    assert comfy.history[error["prompt_id"]]["status"]["status_str"] == "error"

    comfy.fail_next("permanent", node_class="VAEDecode", message="out of memory\nTry less")
    graph["9"]["inputs"]["filename_prefix"] = "sub/dir/x"
    graph["3"]["inputs"]["seed"] = 99  # else VAEDecode is cached from the run before
    _, frames = _run(comfy, graph)
    (error,) = _kinds(frames, "execution_error")
    assert (error["node_type"], error["exception_message"]) == (
        "VAEDecode",
        "out of memory\nTry less\n",
    )


def test_save_prefix_makes_subfolders_and_counts_per_prefix(comfy):
    graph = _graph("sdxl_api.json")
    graph["9"]["inputs"]["filename_prefix"] = "portraits/anna"
    names = []
    for seed in (1, 2):
        graph["3"]["inputs"]["seed"] = seed
        _, frames = _run(comfy, graph)
        names += [
            image for data in _kinds(frames, "executed") for image in data["output"]["images"]
        ]
    assert [(i["subfolder"], i["filename"]) for i in names] == [
        ("portraits", "anna_00001_.png"),
        ("portraits", "anna_00002_.png"),
    ]


def test_a_restart_refuses_connections_then_comes_back_empty(comfy):
    answer, _ = _run(comfy, _graph("sdxl_api.json"))
    url = comfy.url
    comfy.restart(down_s=1.0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/queue")
    assert comfy.wait_until(lambda: comfy.up, 20)
    assert comfy.url == url  # the same port
    assert httpx.get(f"{url}/history/{answer.json()['prompt_id']}").json() == {}
    assert httpx.get(f"{url}/queue").json() == {"queue_running": [], "queue_pending": []}


def test_an_outage_keeps_the_queue_and_the_run(comfy):
    comfy.slow_next(1.5)
    answer = httpx.post(f"{comfy.url}/prompt", json={"prompt": _graph("sdxl_api.json")})
    prompt_id = answer.json()["prompt_id"]
    assert comfy.wait_until(lambda: comfy.running is not None)
    comfy.outage(0.5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{comfy.url}/queue")
    assert comfy.wait_until(lambda: prompt_id in comfy.history, 20)
    assert comfy.wait_until(lambda: comfy.up, 20)
    assert httpx.get(f"{comfy.url}/history/{prompt_id}").json()[prompt_id]["outputs"]
