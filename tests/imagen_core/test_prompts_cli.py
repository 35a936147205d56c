"""``generate --prompts FILE``: a run per line, several at once, each image printed as saved."""

from __future__ import annotations

import json
from pathlib import Path


def _prompts_of(paths: list[str]) -> list[str]:
    return sorted(json.loads(Path(p).with_suffix(".json").read_text())["prompt"] for p in paths)


def test_each_line_is_a_prompt_and_each_image_is_printed(home):
    (home.cwd / "prompts.txt").write_text("a red fox\n# a comment\n\n  a blue whale  \nthird\n")
    proc = home.run(
        "generate", "--prompts", "prompts.txt", "--size", "32x32", "-n", "2", check=True
    )
    paths = proc.stdout.split()
    assert _prompts_of(paths) == ["a blue whale"] * 2 + ["a red fox"] * 2 + ["third"] * 2


def test_prompts_from_stdin_run_at_once_and_as_json(home):
    proc = home.run(
        "generate",
        "--prompts",
        "-",
        "--size",
        "32x32",
        "--opt",
        "delay=0.2",
        "-j",
        "3",
        "--json",
        input="one\ntwo\nthree\n",
    )
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted((r["line"], r["prompt"]) for r in results) == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
    ]
    assert all(Path(r["images"][0]["path"]).exists() for r in results)


def test_what_is_not_a_prompt_file(home):
    proc = home.run("generate", "--prompts", "missing.txt")
    assert (proc.returncode, proc.stderr) == (2, "imagen: missing.txt: no such file\n")
    (home.cwd / "empty.txt").write_text("# only a comment\n\n")
    proc = home.run("generate", "--prompts", "empty.txt")
    assert proc.returncode == 2
    assert "empty.txt: no prompts in it" in proc.stderr
    proc = home.run("generate", "a fox", "--prompts", "empty.txt")
    assert proc.returncode == 2
    assert "give PROMPT, --from or --prompts, not two of them" in proc.stderr


def test_a_bad_option_refuses_the_whole_file_before_anything_runs(home):
    (home.cwd / "p.txt").write_text("one\ntwo\n")
    proc = home.run("generate", "--prompts", "p.txt", "--opt", "dely=1")
    assert proc.returncode == 2
    assert not home.pictures.exists()


def test_a_paid_batch_asks_for_all_its_images(home):
    home.write_config("backends:\n  paid:\n    type: mock\n    price_per_image_usd: 0.01\n")
    (home.cwd / "p.txt").write_text("one\ntwo\nthree\n")
    proc = home.run("generate", "--prompts", "p.txt", "-b", "paid", "-n", "2", "--size", "16x16")
    assert proc.returncode == 2
    assert "this run makes 6 images on backend 'paid' (estimate: $0.0600)" in proc.stderr
    proc = home.run(
        "generate", "--prompts", "p.txt", "-b", "paid", "-n", "2", "--size", "16x16", "-y"
    )
    assert proc.returncode == 0
    assert len(proc.stdout.split()) == 6
