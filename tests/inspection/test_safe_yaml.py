"""Bounded YAML: aliases, anchors, depth, node count and size refused with one line; plain documents load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inspection import safe_yaml
from inspection.errors import ProfileError
from inspection.profiles import InspectionProfile, load_order_book
from tests import hostile


@pytest.mark.parametrize(("text", "message"), [
    (hostile.yaml_alias_bomb(), "anchors (&a0) are not accepted"),
    ("a: *missing\n", "aliases"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n", "anchors"),
    (hostile.deep_yaml(5000), "nested deeper than 64 levels"),
    ("a:\n" + "".join("  " * i + "- \n" for i in range(1, 80)), "nested deeper"),
    ("[" + "1," * 2000 + "1]", "more than 1000 values"),
    ("a: [1, 2\n", "line 2, column 1"),
    ("a: 1\n\tb: 2\n", "line 2"),
    (b"\xff\xfe not utf-8", "not UTF-8"),
], ids=["alias-bomb", "alias", "merge-key", "deep-flow", "deep-block", "too-many", "syntax", "tab", "binary"])
def test_unsafe_or_broken_yaml_is_refused_in_one_line(text: str | bytes, message: str) -> None:
    with pytest.raises(safe_yaml.YamlRefusedError) as caught:
        safe_yaml.load(text, max_nodes=1000)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_size_is_capped_before_parsing() -> None:
    with pytest.raises(safe_yaml.YamlRefusedError, match="larger than the 100 bytes"):
        safe_yaml.load("a: " + "x" * 200, max_bytes=100)


def test_plain_documents_and_json_load_as_with_safe_load() -> None:
    text = "orders:\n  - {id: O-1, due_date: 2026-12-01, n: 3, ok: true}\nnames: [a, b]\nnothing: ~\n"
    import yaml

    assert safe_yaml.load(text) == yaml.safe_load(text)
    assert safe_yaml.load('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    assert safe_yaml.load(hostile.deep_yaml(60))["orders"]  # 60 levels: allowed


def test_the_alias_bomb_order_book_is_a_profile_error_not_a_huge_order(tmp_path: Path) -> None:
    path = tmp_path / "orders.yaml"
    path.write_text(hostile.yaml_alias_bomb())
    assert len(path.read_bytes()) < 600
    with pytest.raises(ProfileError, match="anchors"):
        load_order_book(path)
    path.write_text(hostile.deep_yaml())
    with pytest.raises(ProfileError, match="nested deeper"):
        load_order_book(path)
    with pytest.raises(ProfileError, match=r"aliases|anchors"):
        InspectionProfile.from_yaml("name: &n x\nclasses: {}\ndescription: *n\n")


PLAIN_LOAD = re.compile(r"(?<![\w.])yaml\.(safe_load|load|full_load|unsafe_load|load_all|safe_load_all)\(")


def test_no_code_reads_yaml_around_safe_yaml() -> None:
    """Every YAML a user wrote goes through ``safe_yaml``: a plain ``yaml.safe_load`` would bring bombs back."""
    root = Path(__file__).resolve().parents[2]
    offenders = [str(p.relative_to(root)) for folder in ("api", "inspection", "datasets", "training", "models")
                 for p in (root / folder).rglob("*.py")
                 if p.name != "safe_yaml.py" and PLAIN_LOAD.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
