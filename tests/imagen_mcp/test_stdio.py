"""``imagen mcp`` over stdio, driven by the mcp SDK's own client, as desktop clients launch it.

Each protocol era is tried where the paths differ: ``legacy`` is the initialize handshake
every client of 2025 speaks, ``auto`` lands on 2026-07-28 against this server.
"""

from __future__ import annotations

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_helpers import decoded, pictures, stderr_of, stdio, usage_statuses

MODES = ["legacy", "auto"]
BASE_TOOLS = {"generate_image", "edit_image", "list_backends", "list_styles", "image_info"}


def run(scenario, *args):
    return anyio.run(scenario, *args)


@pytest.mark.parametrize("mode", MODES)
def test_lists_the_tools_with_schemas_written_for_a_model(mcp_home, mode):
    mcp_home.write_config(
        """
        backends:
          draft: {type: mock}
        styles:
          ink: {suffix: ", ink drawing", description: "black ink on paper"}
        """
    )

    async def scenario():
        async with stdio(mcp_home, mode=mode) as client:
            assert client.server_info.name == "imagen"
            assert "list_backends" in (client.instructions or "")
            return {tool.name: tool for tool in (await client.list_tools()).tools}

    tools = run(scenario)
    assert set(tools) == BASE_TOOLS  # no queue configured: no queue tools
    generate = tools["generate_image"]
    schema = generate.input_schema
    assert schema["required"] == ["prompt"]
    properties = schema["properties"]
    assert properties["count"]["maximum"] == 4
    assert properties["prompt"]["description"]
    backend = properties["backend"]["anyOf"][0]
    assert set(backend["enum"]) == {"draft", "mock"}
    style = properties["style"]["anyOf"][0]  # one name: a const, not an enum
    assert style.get("enum", [style.get("const")]) == ["ink"]
    assert generate.output_schema["properties"]["images"]
    assert generate.annotations.read_only_hint is False
    assert tools["list_backends"].annotations.read_only_hint is True
    for tool in tools.values():
        assert len(tool.description) > 80, tool.name


@pytest.mark.parametrize("mode", MODES)
def test_generate_image_returns_the_picture_its_path_seed_and_cost(mcp_home, mode):
    mcp_home.write_config(
        """
        backends:
          mock: {type: mock, price_per_image_usd: 0.02}
        """
    )

    async def scenario():
        async with stdio(mcp_home, mode=mode) as client:
            result = await client.call_tool(
                "generate_image",
                {"prompt": "a lighthouse at dusk", "size": "96x64", "seed": 7, "count": 2},
            )
            uri = result.structured_content["images"][0]["uri"]
            read = await client.read_resource(uri)
            return result, read

    result, read = run(scenario)
    assert result.is_error is False
    made = result.structured_content
    assert made["backend"] == "mock"
    assert made["cost_usd"] == pytest.approx(0.04)
    assert [image["seed"] for image in made["images"]] == [7, 8]
    images = [block for block in result.content if block.type == "image"]
    assert len(images) == 2
    for block, image in zip(images, made["images"], strict=True):
        picture = decoded(block)
        assert picture.size == (96, 64)
        assert image["shown"] == "inline"
        assert picture.tobytes() == decoded_file(image["path"]).tobytes()
    summary = result.content[0].text
    assert "seed 7" in summary
    assert made["images"][0]["path"] in summary
    assert "$0.0400" in summary
    assert {str(p) for p in pictures(mcp_home)} == {i["path"] for i in made["images"]}
    blob = read.contents[0]
    assert blob.mime_type == "image/png"
    assert decoded_blob(blob.blob).size == (96, 64)


def decoded_file(path):
    from PIL import Image

    with Image.open(path) as picture:
        picture.load()
        return picture.copy()


def decoded_blob(data):
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(data)))


def test_progress_notifications_arrive_and_only_grow(mcp_home):
    async def scenario():
        seen = []

        async def progress(value, total, message):
            seen.append((value, total, message))

        async with stdio(mcp_home) as client:
            result = await client.call_tool(
                "generate_image",
                {"prompt": "slow", "size": "32x32", "steps": 5, "options": {"delay": 0.6}},
                progress_callback=progress,
            )
        return result, seen

    result, seen = run(scenario)
    assert result.is_error is False
    values = [value for value, _, _ in seen]
    assert values == sorted(values)
    assert len(set(values)) == len(values)  # never the same number twice
    messages = [message for _, _, message in seen]
    assert messages[0] == "started"
    assert "step 5 of 5" in messages
    assert messages[-1] == "saved 1 image"
    assert seen[-1][:2] == (100.0, 100.0)


@pytest.mark.parametrize("mode", MODES)
def test_cancelling_a_slow_generation_stops_the_backend(mcp_home, mode):
    async def scenario():
        async with stdio(mcp_home, mode=mode) as client:
            started = anyio.Event()

            async def progress(value, total, message):
                if message.startswith("step"):
                    started.set()

            async with anyio.create_task_group() as tasks:

                async def call():
                    await client.call_tool(
                        "generate_image",
                        {"prompt": "never finished", "options": {"delay": 60}},
                        progress_callback=progress,
                    )

                tasks.start_soon(call)
                await started.wait()
                tasks.cancel_scope.cancel()
            # The server stops the backend and records the run as cancelled; it goes on
            # serving (a cancelled run holds no image of the session's limit either).
            while not usage_statuses(mcp_home):
                await anyio.sleep(0.05)
            return await client.call_tool("generate_image", {"prompt": "next", "size": "16x16"})

    after = run(scenario)
    assert usage_statuses(mcp_home) == ["cancelled", "done"]
    assert after.is_error is False
    assert [p.name for p in pictures(mcp_home)] == [
        after.structured_content["images"][0]["path"].rsplit("/", 1)[1]
    ]
    assert "Traceback" not in stderr_of(mcp_home)


def test_a_spending_cap_refuses_with_a_tool_error(mcp_home):
    mcp_home.write_config(
        """
        backends:
          mock: {type: mock, price_per_image_usd: 0.5}
        usage:
          budget: {daily_usd: 1.0}
        """
    )

    async def scenario():
        async with stdio(mcp_home) as client:
            first = await client.call_tool("generate_image", {"prompt": "a", "count": 2})
            second = await client.call_tool("generate_image", {"prompt": "b"})
            still = await client.call_tool("list_backends", {})
            return first, second, still

    first, second, still = run(scenario)
    assert first.is_error is False
    assert second.is_error is True
    text = second.content[0].text
    assert "refused before calling the backend" in text
    assert "daily cap of $1.00" in text
    assert len(pictures(mcp_home)) == 2
    assert usage_statuses(mcp_home) == ["done", "refused"]
    assert still.is_error is False
    assert still.structured_content["backends"][0]["usd_per_image"] == 0.5


def test_the_session_image_limit_stops_a_looping_agent(mcp_home):
    mcp_home.write_config("mcp:\n  max_session_images: 3\n")

    async def session():
        async with stdio(mcp_home) as client:
            results = []
            for count in (2, 2, 1, 1):
                result = await client.call_tool(
                    "generate_image", {"prompt": "again", "size": "16x16", "count": count}
                )
                results.append(result)
            return results

    first, second, third, fourth = run(session)
    assert first.is_error is False
    assert second.is_error is True
    assert "made 2 of its 3 images" in second.content[0].text
    assert "at most 1 more" in second.content[0].text
    assert third.is_error is False
    assert fourth.is_error is True
    assert "made 3 of its 3 images" in fourth.content[0].text
    assert len(pictures(mcp_home)) == 3
    # A new session (a new process, over stdio) starts again from zero.
    again = run(session)
    assert again[0].is_error is False


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": " \n\t"}, "prompt"),
        ({"prompt": "x", "count": "many"}, "count"),
        ({"prompt": "x", "count": 0}, "count"),
        ({"prompt": "x", "count": 5}, "count"),
        ({"prompt": "x", "size": "big"}, "size"),
        ({"prompt": "x", "size": "10x10x10"}, "size"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"prompt": "x", "seed": 2**32}, "seed"),
        ({"prompt": "x", "seed": 1.5}, "seed"),
        ({"prompt": "x", "backend": "nosuch"}, "backend"),
        ({"prompt": "x", "style": "nosuch"}, "style"),
        ({"prompt": "x", "steps": 0}, "steps"),
        ({"prompt": "x", "options": {"delay": {"nested": 1}}}, "options"),
        ({"prompt": "x", "options": {"": 1}}, "options"),
        ({"prompt": "x", "options": "delay=1"}, "options"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "x" * 8001}, "prompt"),
    ],
)
def test_malformed_arguments_are_schema_errors_naming_the_field(mcp_home, arguments, field):
    async def scenario():
        async with stdio(mcp_home) as client:
            return await client.call_tool("generate_image", arguments)

    result = run(scenario)
    assert result.is_error is True
    assert field in result.content[0].text
    assert pictures(mcp_home) == []


def test_an_impossible_request_is_a_tool_error_from_the_backend(mcp_home):
    async def scenario():
        async with stdio(mcp_home) as client:
            small = await client.call_tool("generate_image", {"prompt": "x", "size": "8x8"})
            failed = await client.call_tool(
                "generate_image", {"prompt": "x", "options": {"fail": "transient"}}
            )
            return small, failed

    small, failed = run(scenario)
    assert small.is_error is True
    assert "out of bounds for the mock backend" in small.content[0].text
    assert failed.is_error is True
    assert "trying again later may work" in failed.content[0].text
    assert "Traceback" not in stderr_of(mcp_home)


def test_large_images_come_as_a_preview_and_a_link(mcp_home):
    mcp_home.write_config("mcp:\n  inline_max_bytes: 30000\n")

    async def scenario():
        async with stdio(mcp_home) as client:
            result = await client.call_tool(
                "generate_image", {"prompt": "a detailed scene", "size": "1500x1100"}
            )
            link = next(block for block in result.content if block.type == "resource_link")
            read = await client.read_resource(link.uri)
            return result, link, read

    result, link, read = run(scenario)
    made = result.structured_content["images"][0]
    assert made["bytes"] > 30000
    assert made["shown"] == "preview"
    preview = next(block for block in result.content if block.type == "image")
    assert preview.mime_type == "image/jpeg"
    assert len(preview.data) * 3 / 4 <= 30000
    assert max(decoded(preview).size) <= 1024
    assert link.uri == made["uri"]
    assert link.size == made["bytes"]
    assert decoded_blob(read.contents[0].blob).size == (1500, 1100)


def test_without_previews_a_large_image_is_a_link_only(mcp_home):
    mcp_home.write_config("mcp:\n  inline_max_bytes: 0\n  previews: false\n")

    async def scenario():
        async with stdio(mcp_home) as client:
            return await client.call_tool("generate_image", {"prompt": "x", "size": "64x64"})

    result = run(scenario)
    assert [block.type for block in result.content] == ["text", "resource_link"]
    assert result.structured_content["images"][0]["shown"] == "link"


def test_image_info_and_the_recent_images(mcp_home, tmp_path):
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"\x89PNG not really")

    async def scenario():
        async with stdio(mcp_home) as client:
            made = await client.call_tool(
                "generate_image", {"prompt": "koi pond", "size": "32x32", "seed": 42}
            )
            uri = made.structured_content["images"][0]["uri"]
            info = await client.call_tool("image_info", {"image": uri})
            by_path = await client.call_tool(
                "image_info", {"image": made.structured_content["images"][0]["path"]}
            )
            listed = await client.list_resources()
            templates = await client.list_resource_templates()
            refused = []
            for bad in (
                "imagen://images/../secret.png",
                "imagen://images/%2E%2E/secret.png",
                f"imagen://images/{outside}",
                "imagen://images/nosuch.png",
                "imagen://images/link.png",
            ):
                try:
                    await client.read_resource(bad)
                except MCPError as exc:
                    refused.append(exc.error.message)
            return uri, info, by_path, listed, templates, refused

    mcp_home.pictures.mkdir(parents=True)
    (mcp_home.pictures / "link.png").symlink_to(outside)
    uri, info, by_path, listed, templates, refused = run(scenario)
    fields = info.structured_content["fields"]
    assert fields["prompt"] == "koi pond"
    assert fields["seed"] == 42
    assert fields["backend"] == "mock"
    assert by_path.structured_content["fields"] == fields
    assert [resource.uri for resource in listed.resources] == [uri]
    assert listed.resources[0].description == "prompt: koi pond"
    assert templates.resource_templates[0].uri_template == "imagen://images/{+path}"
    assert len(refused) == 5


def test_the_server_keeps_stdout_for_the_protocol(mcp_home):
    """Log lines, warnings and the pipeline's chatter go to stderr: stdout is the wire."""
    mcp_home.write_config(
        """
        backends:
          mock: {type: mock}
        preview: {enabled: true}
        """
    )

    async def scenario():
        async with stdio(mcp_home) as client:
            return await client.call_tool("generate_image", {"prompt": "x", "size": "16x16"})

    assert run(scenario).is_error is False


def _json_values():
    from hypothesis import strategies as st

    text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text
        | st.sampled_from(["16x16", "32X24", " 20 x 20 ", "0x0", "5000x5000", "x", "16x"])
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3)
        ),
        max_leaves=8,
    )


def test_hostile_arguments_never_crash_the_server(mcp_home):
    """Generated arguments, valid and not: each call answers (a result or a tool error)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    mcp_home.write_config("mcp:\n  max_session_images: 0\n  inline_max_bytes: 4000\n")
    names = ["prompt", "negative_prompt", "size", "count", "seed", "backend", "style", "steps"]
    small = st.sampled_from(["16x16", "24x16", "8x8", "16x5000", "huge"])
    options = st.dictionaries(
        st.text(max_size=8).filter(lambda key: key != "delay"), _json_values(), max_size=3
    )
    arguments = st.fixed_dictionaries(
        {"prompt": st.text(max_size=30) | _json_values()},
        optional={
            **{name: _json_values() for name in names[1:]},
            "size": small | _json_values(),
            "count": st.integers(min_value=-1, max_value=3) | _json_values(),
            "options": options | _json_values(),
        },
    )
    outcomes = {"result": 0, "error": 0}

    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(stdio(mcp_home)) as client,
    ):

        @settings(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture],
        )
        @given(arguments)
        def call(args):
            result = portal.call(client.call_tool, "generate_image", args)
            if result.is_error:
                outcomes["error"] += 1
                assert result.content[0].text.startswith("Error executing tool generate_image:")
            else:
                outcomes["result"] += 1
                assert result.structured_content["images"]

        call()
        alive = portal.call(client.call_tool, "list_backends", {})
    assert alive.is_error is False
    assert outcomes["result"] > 0
    assert outcomes["error"] > 0
    # An unexpected exception would be logged with its traceback: there is none.
    assert "Traceback" not in stderr_of(mcp_home)


@pytest.mark.parametrize(
    ("config", "said"),
    [
        ("mcp:\n  max_count: 0\n", "imagen.yaml:2: mcp.max_count: must be at least 1, not 0"),
        ("mcp:\n  max_cont: 2\n", "mcp.max_cont: unknown key"),
        ("mcp:\n  path: mcp\n", "mcp.path: must start with /"),
        ("backends:\n  x: {type: nosuch}\ndefault_backend: y\n", "default_backend"),
    ],
)
def test_a_bad_config_is_one_line_and_exit_3(mcp_home, config, said):
    mcp_home.write_config(config)
    proc = mcp_home.run("mcp", input="")
    assert proc.returncode == 3
    assert proc.stdout == ""  # nothing on the protocol's channel
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("imagen: ")
    assert said in lines[0]


def test_image_info_on_files_that_are_not_images(mcp_home, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")

    async def scenario():
        async with stdio(mcp_home) as client:
            return [
                await client.call_tool("image_info", {"image": str(path)})
                for path in (tmp_path / "notes.txt", tmp_path, tmp_path / "missing.png")
            ]

    for result in run(scenario):
        assert result.is_error is True
        assert result.content[0].text.startswith("Error executing tool image_info:")
    assert "Traceback" not in stderr_of(mcp_home)
