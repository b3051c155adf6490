from __future__ import annotations

from pathlib import Path

import pytest

from inspection.errors import ProfileError
from inspection.profiles import InspectionProfile, load_order_book

GOOD = """
name: gloss
classes:
  scratch: {confidence: 0.3, critical: true}
required_views: [top]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\nclasses: {s: {confidence: 2}}", "less than or equal to 1"),
        ("name: x\nclasses: {s: {confidence: 0.3, review_from: 0.5}}", "must not exceed"),
        ("name: x\nclasses: {s: {max_count: -1}}", "greater than or equal to 0"),
        ("name: x\nrequired_views: [top, top]", "distinct"),
        ("name: x\nunknown_key: 1", "Extra inputs"),
        ("[1, 2]", "must be a mapping"),
        ("name: [unclosed", "does not parse"),
        ("description: no name", "name"),
    ],
)
def test_bad_profiles_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        InspectionProfile.from_yaml(text)


def test_hash_follows_content_not_formatting() -> None:
    a = InspectionProfile.from_yaml(GOOD)
    b = InspectionProfile.from_yaml("{name: gloss, required_views: [top], classes: {scratch: {critical: true, "
                                    "confidence: 0.30}}}")
    c = InspectionProfile.from_yaml(GOOD.replace("0.3", "0.35"))
    assert a.content_hash == b.content_hash != c.content_hash


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orders.yaml"
    path.write_text(text)
    return path


def test_order_book_with_profile_file_and_inline_profile(tmp_path: Path) -> None:
    (tmp_path / "gloss.yaml").write_text(GOOD)
    book = load_order_book(_write(tmp_path, """
profiles:
  gloss: gloss.yaml
  rustic: {name: rustic, classes: {knot: {ignore: true}}}
orders:
  - {id: O1, customer_ref: C-9, product: door, attributes: {finish: lacquer}, due_date: 2026-12-01, profile: gloss}
  - {id: O2, profile: rustic}
"""))
    assert [o.id for o in book.orders] == ["O1", "O2"]
    assert book.profiles["gloss"].rule_for("scratch").critical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("orders: [{id: O1, profile: nope}]", "unknown profile"),
        ("profiles: {p: {name: p}}\norders: [{id: O1, profile: p}, {id: O1, profile: p}]", "appears twice"),
        ("profiles: {p: {name: q}}\norders: []", "holds a profile named"),
        ("profiles: {p: {name: p}}\norders: [{profile: p}]", "orders\\[0\\]"),
        ("just text", "expected a mapping"),
        ("profiles: {p: missing.yaml}\norders: []", "cannot read profile"),
    ],
)
def test_bad_order_books(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProfileError, match=message):
        load_order_book(_write(tmp_path, text))
