"""Finding credentials in what a backend says, in every form they travel in.

A backend rarely prints a token whole. It prints half of it (a "masked" key that masks too
little), or an ``Authorization: Basic ...`` header an upstream echoed back, where
``user:password`` is base64. :class:`SecretProbe` looks for the value, for any long enough
piece of it, and for its base64 and URL-encoded forms, and says *where* it found one
without ever repeating it, so a failing check does not print the secret into a CI log.
"""

from __future__ import annotations

import base64
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["SECRET_MIN_LENGTH", "SecretProbe"]

SECRET_MIN_LENGTH = 6
"""Shorter environment values (a user name, a region) are not treated as secrets."""
_FRAGMENT_MAX = 10  # a window this long of a long secret is already a leak
REDACTED = "[secret]"


@dataclass(frozen=True)
class _Form:
    needle: str
    what: str  # which form of which variable, for messages; never the value itself


def _encodings(text: str) -> Iterable[tuple[str, str]]:
    raw = text.encode()
    yield base64.b64encode(raw).decode().rstrip("="), "base64"
    yield base64.urlsafe_b64encode(raw).decode().rstrip("="), "URL-safe base64"
    quoted = quote(text, safe="")
    if quoted != text:
        yield quoted, "URL-encoded"


class SecretProbe:
    """The secrets of one test's environment, and every form in which they might leak.

    :param environ: the environment the backend reads credentials from; values of
        :data:`SECRET_MIN_LENGTH` characters or more are secrets.
    :param public: texts the test itself sends (the prompt, the slice): a piece of a
        secret that also occurs there is ordinary text, not a leak.
    """

    def __init__(self, environ: Mapping[str, str], public: Iterable[str] = ()) -> None:
        public_text = "\n".join(public)
        self.secrets = {name: value for name, value in environ.items() if _is_secret(value)}
        forms: dict[str, str] = {}
        for name, value in self.secrets.items():
            forms.setdefault(value, f"the value of ${name}")
            for needle, encoding in _encodings(value):
                forms.setdefault(needle, f"the {encoding} of ${name}")
            size = min(len(value), max(SECRET_MIN_LENGTH, min(len(value) // 2, _FRAGMENT_MAX)))
            for start in range(len(value) - size + 1):
                piece = value[start : start + size]
                if piece not in public_text:
                    forms.setdefault(
                        piece, f"a piece of ${name} ({size} of its {len(value)} characters)"
                    )
        # HTTP Basic auth: "user:password", base64-encoded, from any two variables.
        for (user_var, user), (pass_var, password) in itertools.permutations(environ.items(), 2):
            if _is_secret(password) and user:
                for needle, encoding in _encodings(f"{user}:{password}"):
                    forms.setdefault(needle, f"the {encoding} of ${user_var}:${pass_var}")
        # Longest first: report (and redact) the whole value before its pieces.
        self._forms = [_Form(n, w) for n, w in sorted(forms.items(), key=lambda f: -len(f[0]))]
        self._pattern = (
            re.compile("|".join(re.escape(form.needle) for form in self._forms))
            if self._forms
            else None
        )

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def find(self, text: str) -> str | None:
        """Which form of which secret ``text`` holds (never the secret), or None."""
        if self._pattern is None:
            return None
        match = self._pattern.search(text)
        if match is None:
            return None
        found = match.group(0)
        return next(form.what for form in self._forms if form.needle == found)

    def redact(self, text: str) -> str:
        """``text`` with every form of every secret replaced by ``[secret]``."""
        if self._pattern is None:
            return text
        return self._pattern.sub(REDACTED, text)


def _is_secret(value: str) -> bool:
    return isinstance(value, str) and len(value) >= SECRET_MIN_LENGTH
