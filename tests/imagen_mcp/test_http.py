"""``imagen mcp --http``: streamable HTTP behind imagen serve's API keys and JWTs.

A real server process on a loopback port, driven by the mcp SDK's client (both protocol
eras) and, for what happens at the door, by plain HTTP requests.
"""

from __future__ import annotations

import time

import anyio
import httpx
import jwt
import pytest
from mcp.shared.exceptions import MCPError
from mcp_helpers import (
    ALICE_KEY,
    BOB_KEY,
    decoded,
    http_server,
    pictures,
    serve_keys_config,
    usage_statuses,
)

MODES = ["legacy", "auto"]
SECRET = "a-test-secret-of-at-least-32-bytes!!"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "curl", "version": "1"},
    },
}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def keyed_home(mcp_home):
    mcp_home.write_config(serve_keys_config("  jwt_secret_env: TEST_JWT_SECRET\n"))
    mcp_home.env["TEST_JWT_SECRET"] = SECRET
    return mcp_home


def token(sub: str | None, expires_in: float = 3600) -> str:
    claims = {"role": "authenticated", "exp": int(time.time() + expires_in)}
    if sub is not None:
        claims["sub"] = sub
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_the_door_refuses_callers_without_a_valid_token(keyed_home):
    with http_server(keyed_home) as server:
        answers = {}
        for name, headers in {
            "none": {},
            "wrong key": {"Authorization": "Bearer imk_wrong"},
            "not bearer": {"Authorization": f"Basic {ALICE_KEY}"},
            "expired": {"Authorization": f"Bearer {token('alice', -60)}"},
            "forged": {"Authorization": f"Bearer {token('alice')[:-2]}xx"},
            "no sub": {"Authorization": f"Bearer {token(None)}"},
            "key": {"Authorization": f"Bearer {ALICE_KEY}"},
            "jwt": {"Authorization": f"Bearer {token('carol')}"},
        }.items():
            answer = httpx.post(server.url, json=INITIALIZE, headers={**ACCEPT, **headers})
            answers[name] = answer.status_code, answer.headers.get("www-authenticate", "")
    for name in ("none", "wrong key", "not bearer", "expired", "forged", "no sub"):
        status, challenge = answers[name]
        assert status == 401, name
        assert challenge.startswith("Bearer "), name
    assert answers["key"][0] == 200
    assert answers["jwt"][0] == 200


@pytest.mark.parametrize("mode", MODES)
def test_tools_progress_and_a_decoded_image_over_http(keyed_home, mode):
    with http_server(keyed_home) as server:

        async def scenario():
            seen = []

            async def progress(value, total, message):
                seen.append(message)

            async with server.client(mode=mode) as client:
                tools = {tool.name for tool in (await client.list_tools()).tools}
                result = await client.call_tool(
                    "generate_image",
                    {"prompt": "over the wire", "size": "48x40", "options": {"delay": 0.4}},
                    progress_callback=progress,
                )
                return tools, result, seen

        tools, result, seen = anyio.run(scenario)
    assert tools == {"generate_image", "edit_image", "list_backends", "list_styles", "image_info"}
    assert result.is_error is False
    image = next(block for block in result.content if block.type == "image")
    assert decoded(image).size == (48, 40)
    assert "started" in seen
    assert seen[-1] == "saved 1 image"


@pytest.mark.parametrize("mode", MODES)
def test_cancelling_over_http_stops_the_backend(keyed_home, mode):
    with http_server(keyed_home) as server:

        async def scenario():
            async with server.client(mode=mode) as client:
                started = anyio.Event()

                async def progress(value, total, message):
                    if message.startswith("step"):
                        started.set()

                async with anyio.create_task_group() as tasks:

                    async def call():
                        await client.call_tool(
                            "generate_image",
                            {"prompt": "never", "options": {"delay": 60}},
                            progress_callback=progress,
                        )

                    tasks.start_soon(call)
                    await started.wait()
                    tasks.cancel_scope.cancel()
                # Stay connected while the server stops the run, as a client goes on after
                # cancelling one call (closing the session at once races the SDK's own
                # handling of the cancellation, which then logs an error of its own).
                while not usage_statuses(keyed_home):
                    await anyio.sleep(0.05)

        anyio.run(scenario)
    assert usage_statuses(keyed_home) == ["cancelled"]
    assert pictures(keyed_home) == []


def test_callers_see_only_their_own_images(keyed_home):
    with http_server(keyed_home) as server:

        async def scenario():
            async with server.client(ALICE_KEY) as alice:
                made = await alice.call_tool(
                    "generate_image", {"prompt": "alice's", "size": "16x16"}
                )
                image = made.structured_content["images"][0]
                mine = await alice.list_resources()
                read = await alice.read_resource(image["uri"])
                info = await alice.call_tool("image_info", {"image": image["path"]})
            async with server.client(BOB_KEY) as bob:
                theirs = await bob.list_resources()
                with pytest.raises(MCPError):
                    await bob.read_resource(image["uri"])
                by_uri = await bob.call_tool("image_info", {"image": image["uri"]})
                by_path = await bob.call_tool("image_info", {"image": image["path"]})
                elsewhere = await bob.call_tool("image_info", {"image": "/etc/passwd"})
            return image, mine, read, info, theirs, by_uri, by_path, elsewhere

        image, mine, read, info, theirs, by_uri, by_path, elsewhere = anyio.run(scenario)
    assert [r.uri for r in mine.resources] == [image["uri"]]
    assert read.contents[0].mime_type == "image/png"
    assert info.structured_content["fields"]["prompt"] == "alice's"
    assert theirs.resources == []
    for refused in (by_uri, by_path):  # exactly as for an image that does not exist
        assert refused.is_error is True
        assert "no image at" in refused.content[0].text
    assert elsewhere.is_error is True
    assert "only the images made for you" in elsewhere.content[0].text


def test_the_session_limit_counts_per_caller_session(keyed_home):
    keyed_home.write_config(serve_keys_config("mcp:\n          max_session_images: 1\n"))
    with http_server(keyed_home) as server:

        async def scenario():
            results = []
            for key in (ALICE_KEY, ALICE_KEY, BOB_KEY):
                async with server.client(key, mode="legacy") as client:
                    first = await client.call_tool(
                        "generate_image", {"prompt": "a", "size": "16x16"}
                    )
                    second = await client.call_tool(
                        "generate_image", {"prompt": "b", "size": "16x16"}
                    )
                    results.append((first.is_error, second.is_error))
            return results

        results = anyio.run(scenario)
    # Each legacy session (Mcp-Session-Id) of each caller has its own count.
    assert results == [(False, True), (False, True), (False, True)]


def test_serve_key_makes_a_key_that_lets_its_owner_in(mcp_home):
    """imagen serve-key comes with imagen-mcp too, for when imagen-worker is not installed."""
    made = mcp_home.run("serve-key", "dora", check=True).stdout
    key = made.split("keep it secret):\n  ", 1)[1].split()[0]
    line = made.rsplit("api_keys:\n", 1)[1]
    mcp_home.write_config("serve:\n  api_keys:\n" + line)
    with http_server(mcp_home) as server:

        async def scenario():
            async with server.client(key) as client:
                return await client.call_tool("list_styles", {})

        assert anyio.run(scenario).is_error is False
