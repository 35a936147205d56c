"""``--opt`` names a backend does not know are refused before it runs; --size or --width."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imagen.options import closest


def test_a_misspelt_option_is_refused_with_the_closest_name(home):
    proc = home.run("generate", "a fox", "--opt", "dely=1", "--size", "32x32")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        'imagen: backend "mock" has no option "dely" (did you mean "delay"? '
        "known: delay, fail, format)\n"
    )
    assert not home.pictures.exists()  # nothing was made


def test_an_option_far_from_any_is_refused_without_a_guess(home):
    proc = home.run("generate", "a fox", "--opt", "cfg=7")
    assert proc.returncode == 2
    assert proc.stderr == (
        'imagen: backend "mock" has no option "cfg" (known: delay, fail, format)\n'
    )


def test_known_options_still_run(home):
    proc = home.run("generate", "a fox", "--opt", "format=webp", "--size", "32x32", check=True)
    assert proc.stdout.strip().endswith(".webp")


def test_size_and_width_together_are_refused(home):
    for flags in (("--width", "64"), ("--height", "48"), ("--width", "64", "--height", "64")):
        proc = home.run("generate", "a fox", "--size", "64x64", *flags)
        assert proc.returncode == 2, flags
        assert "imagen: give --size or --width/--height, not both" in proc.stderr
    assert not home.pictures.exists()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.lists(st.text(min_size=1, max_size=20), max_size=8))
def test_closest_is_one_of_the_known_names_or_none(name, known):
    guess = closest(name, known)
    assert guess is None or guess in known
