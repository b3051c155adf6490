"""Identifiers a person reads on screen (unit, order, camera ids): one spelling per look.

``UNIT-7`` spelt with U+2010 HYPHEN, or in full-width letters (U+FF35 ...), looks like ``UNIT-7`` in the queue but
would be other units. So an id is refused (``IdentifierError``, HTTP 422 / a CLI line) when

* its NFKC form differs from it (full-width and compatibility characters: send the plain spelling, which the
  message names),
* it holds a dash, space or invisible character other than ASCII ``-`` and `` `` (U+2010-U+2015, U+2212, NBSP,
  zero-width and bidirectional controls ...),
* it mixes Latin letters with Cyrillic or Greek ones (``UNIT`` with U+0406, a Cyrillic I).
"""

from __future__ import annotations

import unicodedata

from inspection.errors import QCError

MAX_LENGTH = 128


class IdentifierError(QCError):
    """An id that is empty, too long, or could be mistaken for another on screen (HTTP 422)."""


def _describe(char: str) -> str:
    return f"U+{ord(char):04X} {unicodedata.name(char, 'unnamed character')}"


def check_identifier(kind: str, value: str | None) -> str:
    """``value`` stripped, or ``IdentifierError`` saying which character is refused and why."""
    text = (value or "").strip()
    if not text:
        raise IdentifierError(f"{kind} is required")
    if len(text) > MAX_LENGTH or not text.isprintable():
        raise IdentifierError(f"{kind} must be 1-{MAX_LENGTH} printable characters")
    plain = unicodedata.normalize("NFKC", text)
    if plain != text:
        odd = next(c for c in text if unicodedata.normalize("NFKC", c) != c)
        raise IdentifierError(f"{kind} {text!r} contains {_describe(odd)}, a look-alike of {plain!r}: send the "
                              "plain spelling")
    for char in text:
        category = unicodedata.category(char)
        if char not in "- " and (category in ("Pd", "Zs", "Cf") or char == "\u2212"):
            raise IdentifierError(f"{kind} {text!r} contains {_describe(char)}, which looks like another "
                                  "character: use ASCII '-' and ' '")
    scripts = {unicodedata.name(c, "").split(" ")[0] for c in text if c.isalpha()}
    if "LATIN" in scripts and scripts & {"CYRILLIC", "GREEK"}:
        raise IdentifierError(f"{kind} {text!r} mixes Latin letters with {'/'.join(sorted(scripts - {'LATIN'}))} "
                              "look-alikes")
    return text


__all__ = ["MAX_LENGTH", "IdentifierError", "check_identifier"]
