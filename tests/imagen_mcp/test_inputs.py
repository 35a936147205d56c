"""Input images through ``imagen mcp``: edits arrive, hostile inputs are one clear tool error.

Driven with the mcp SDK's own client over stdio (and HTTP where callers differ), against
the built-in mock backend, which uses its inputs visibly: where a mask is black, the
edited image is the input image exactly.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp_helpers import (
    b64,
    decoded,
    half_mask,
    http_server,
    noise_png,
    picture_of,
    pictures,
    serve_keys_config,
    stdio,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(scenario, *args):
    return anyio.run(scenario, *args)


def bomb_png(side=50_000) -> bytes:
    """A PNG of a few hundred bytes whose header says side × side pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\0" * (side + 1) * 4, 9)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def error_text(result) -> str:
    assert result.is_error is True, result
    texts = [block.text for block in result.content if block.type == "text"]
    assert len(texts) == 1, texts
    return (
        texts[0]
        .removeprefix("Error executing tool edit_image: ")
        .removeprefix("Error executing tool generate_image: ")
    )


@pytest.fixture
def scratch(mcp_home):
    """The server's TMPDIR, to prove nothing is left in it."""
    path = mcp_home.root / "tmp"
    path.mkdir()
    mcp_home.env["TMPDIR"] = str(path)
    return path


def test_an_edit_through_the_mock_uses_the_image_and_the_mask(mcp_home, scratch):
    mcp_home.write_config("backends:\n  mock: {type: mock}\n")
    source = noise_png()

    async def scenario():
        async with stdio(mcp_home) as client:
            edited = await client.call_tool(
                "edit_image",
                {
                    "image": {"data": b64(source), "name": "photo.png"},
                    "mask": {"data": "data:image/png;base64," + b64(half_mask())},
                    "prompt": "a stormy sky",
                    "strength": 0.8,
                    "seed": 3,
                },
            )
            plain = await client.call_tool(
                "generate_image", {"prompt": "a stormy sky", "size": "64x48", "seed": 3}
            )
            return edited, plain

    edited, plain = run(scenario)
    assert edited.is_error is False, edited.content
    made = edited.structured_content["images"][0]
    assert (made["width"], made["height"]) == (64, 48)  # the input's size
    picture = decoded(next(b for b in edited.content if b.type == "image")).convert("RGB")
    original = picture_of(source)
    kept = (32, 0, 64, 48)  # where the mask is black, the input untouched
    assert picture.crop(kept).tobytes() == original.crop(kept).tobytes()
    changed = (0, 0, 32, 48)
    assert picture.crop(changed).tobytes() != original.crop(changed).tobytes()
    other = decoded(next(b for b in plain.content if b.type == "image")).convert("RGB")
    assert other.tobytes() != picture.tobytes()
    sidecar = Path(made["path"]).with_suffix(".json").read_text()
    assert "photo.png" in sidecar  # the input is recorded by name and hash
    assert list(scratch.iterdir()) == []


def test_inputs_by_path_under_the_roots_and_by_uri(mcp_home, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "sketch.png").write_bytes(noise_png(seed=5))
    mcp_home.write_config(f"backends:\n  mock: {{type: mock}}\nmcp:\n  input_roots: ['{shared}']\n")

    async def scenario():
        async with stdio(mcp_home) as client:
            by_path = await client.call_tool(
                "generate_image",
                {
                    "prompt": "ink",
                    "inputs": [{"path": str(shared / "sketch.png")}],
                    "strength": 0.5,
                },
            )
            uri = by_path.structured_content["images"][0]["uri"]
            by_uri = await client.call_tool(
                "edit_image", {"prompt": "more ink", "image": {"uri": uri}}
            )
            made = by_path.structured_content["images"][0]["path"]
            by_output_path = await client.call_tool(
                "edit_image", {"prompt": "again", "image": {"path": made}}
            )
            return by_path, by_uri, by_output_path

    results = run(scenario)
    for result in results:
        assert result.is_error is False, result.content
    assert len(pictures(mcp_home)) == 3


@pytest.fixture
def hostile(mcp_home, tmp_path, scratch):
    """A server config with a small input limit, and files outside what callers may read."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.png"
    secret.write_bytes(noise_png(seed=9))
    mcp_home.pictures.mkdir(parents=True)
    (mcp_home.pictures / "link.png").symlink_to(secret)
    (mcp_home.pictures / "bomb.png").write_bytes(bomb_png())
    mcp_home.write_config("backends:\n  mock: {type: mock}\nmcp:\n  input_max_bytes: 100000\n")
    return secret


HOSTILE = {
    "path-traversal": (
        lambda home, secret: {"path": f"{home.pictures}/../../../{secret.relative_to(home.root)}"},
        "outside the directories inputs may be read from",
    ),
    "relative-traversal": (lambda home, secret: {"path": "../outside/secret.png"}, "outside"),
    "symlink-out-of-root": (
        lambda home, secret: {"path": str(home.pictures / "link.png")},
        "outside the directories inputs may be read from",
    ),
    "absolute-elsewhere": (lambda home, secret: {"path": "/etc/passwd"}, "outside"),
    "missing": (lambda home, secret: {"path": str(home.pictures / "none.png")}, "cannot read"),
    "bomb-by-path": (
        lambda home, secret: {"path": str(home.pictures / "bomb.png")},
        "more than the 67,108,864 pixels",
    ),
    "bomb-as-data": (
        lambda home, secret: {"data": b64(bomb_png())},
        "more than the 67,108,864 pixels",
    ),
    "oversize-data": (
        lambda home, secret: {"data": b64(os.urandom(150_000))},
        "more than the 100,000-byte input",
    ),
    "not-an-image": (lambda home, secret: {"data": b64(b"GIF89a" + bytes(64))}, "not a PNG"),
    "bad-base64": (lambda home, secret: {"data": "iVBORw0K!!!"}, "not base64"),
    "uri-traversal": (
        lambda home, secret: {"uri": "imagen://images/../../outside/secret.png"},
        "leads outside the output directory",
    ),
    "unknown-uri": (lambda home, secret: {"uri": "imagen://images/nothing.png"}, "no image at"),
}


def test_hostile_inputs_each_give_one_clear_tool_error(mcp_home, hostile, scratch):
    async def scenario():
        answers = {}
        async with stdio(mcp_home) as client:
            for case, (make, _) in HOSTILE.items():
                answers[case] = await client.call_tool(
                    "edit_image", {"prompt": "p", "image": make(mcp_home, hostile)}
                )
            # The server is still there, and works.
            answers["after"] = await client.call_tool("generate_image", {"prompt": "p"})
        return answers

    answers = run(scenario)
    for case, (_, expected) in HOSTILE.items():
        text = error_text(answers[case])
        assert text.startswith("inputs[0]: "), (case, text)
        assert expected in text, (case, text)
        assert "Traceback" not in text
    assert answers["after"].is_error is False
    assert [p.name for p in pictures(mcp_home)] != []  # the one made after
    assert list(scratch.iterdir()) == []


def test_requests_the_backend_cannot_honour_are_refused(mcp_home, scratch):
    mcp_home.write_config("backends:\n  mock: {type: mock}\n")
    image = {"data": b64(noise_png())}

    async def scenario():
        async with stdio(mcp_home) as client:
            two = await client.call_tool(
                "generate_image", {"prompt": "p", "inputs": [image, {**image, "role": "image"}]}
            )
            mask = await client.call_tool(
                "edit_image",
                {"prompt": "p", "image": image, "mask": {"data": b64(half_mask((40, 40)))}},
            )
            both = await client.call_tool(
                "edit_image", {"prompt": "p", "image": {**image, "path": "/x.png"}}
            )
            strength = await client.call_tool(
                "edit_image", {"prompt": "p", "image": image, "strength": 1.5}
            )
        return two, mask, both, strength

    two, mask, both, strength = run(scenario)
    assert 'backend "mock" takes at most 1 image input' in error_text(two)
    assert "must be the same size" in error_text(mask)
    assert "give exactly one of path, data and uri" in error_text(both)
    assert "strength" in error_text(strength)
    assert pictures(mcp_home) == []
    assert list(scratch.iterdir()) == []


garbage = st.one_of(
    st.binary(min_size=1, max_size=2048).map(b64),
    st.binary(max_size=512).map(lambda data: b64(PNG_SIGNATURE + data)),
    st.text(min_size=1, max_size=300),
    st.binary(min_size=1, max_size=64).map(lambda data: "data:image/png;base64," + b64(data)),
)


def hypothesis_garbage(count: int) -> list[str]:
    """``count`` pieces of generated base64 garbage, for one server session to refuse."""
    drawn: list[str] = []

    @settings(max_examples=count, database=None, suppress_health_check=list(HealthCheck))
    @given(garbage)
    def collect(value: str) -> None:
        drawn.append(value)

    collect()
    return drawn


def test_generated_base64_garbage_is_refused_one_line_each(mcp_home, scratch):
    mcp_home.write_config("backends:\n  mock: {type: mock}\n")
    samples = hypothesis_garbage(60)

    async def scenario():
        async with stdio(mcp_home) as client:
            return [
                await client.call_tool("edit_image", {"prompt": "p", "image": {"data": sample}})
                for sample in samples
            ]

    for sample, result in zip(samples, run(scenario), strict=True):
        text = error_text(result)
        assert text.startswith("inputs[0]: "), (sample, text)
        assert "\n" not in text, text
        assert "Traceback" not in text
    assert pictures(mcp_home) == []
    assert list(scratch.iterdir()) == []


def test_over_http_a_path_input_is_only_an_image_made_for_the_caller(mcp_home, tmp_path):
    from mcp_helpers import BOB_KEY

    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(noise_png())
    mcp_home.write_config(serve_keys_config("backends:\n          mock: {type: mock}"))

    async def scenario(server):
        async with server.client() as alice:
            made = await alice.call_tool("generate_image", {"prompt": "p", "size": "32x32"})
            path = made.structured_content["images"][0]["path"]
            mine = await alice.call_tool("edit_image", {"prompt": "q", "image": {"path": path}})
            outside = await alice.call_tool(
                "edit_image", {"prompt": "q", "image": {"path": str(elsewhere)}}
            )
        async with server.client(BOB_KEY) as bob:
            theirs = await bob.call_tool("edit_image", {"prompt": "q", "image": {"path": path}})
        return mine, outside, theirs

    with http_server(mcp_home) as server:
        mine, outside, theirs = anyio.run(scenario, server)
    assert mine.is_error is False, mine.content
    assert "an input path must be an image made for you" in error_text(outside)
    assert "no image at" in error_text(theirs)
