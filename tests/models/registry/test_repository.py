"""The model registry on SQLite and PostgreSQL: content-addressed registration, the promotion gate,
rollback and the audit trail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from datasets.records import LabeledBox, LabeledImage
from datasets.snapshot import Snapshot, SnapshotEntry
from inspection.errors import ConflictError, ModelPackageError, NotFoundError
from inspection.hashing import sha256_file
from inspection.model_package import MODEL_FILE
from inspection.store.db import normalise_url
from models.evaluation import evaluate_for_gate
from models.registry import (
    CANDIDATE,
    CHAMPION,
    RETIRED,
    ModelRegistry,
    PromotionRefused,
    gate_checks,
)
from tests.builders import Candidate, solid_image, tiny_package, write_image

BOX = Candidate(32, 32, 20, 20, 0, 0.9)
DENT = Candidate(20, 20, 10, 10, 1, 0.8)


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[ModelRegistry]:
    reg = ModelRegistry.open(db_url, tmp_path / "registry")
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three different tiny packages (different candidates, so different bytes and sha256)."""
    base = tmp_path_factory.mktemp("packages")
    return {"a": tiny_package(base / "a", [BOX]), "b": tiny_package(base / "b", [DENT]),
            "c": tiny_package(base / "c", [BOX, DENT])}


def metrics(map50: float, map50_95: float, **ap50: float) -> dict[str, Any]:
    return {"map50": map50, "map50_95": map50_95,
            "per_class": {name: {"ap50": v, "ap50_95": v / 2, "precision": 1.0, "recall": 1.0, "instances": 5.0}
                          for name, v in ap50.items()}}


CHAMP = metrics(0.80, 0.50, scratch=0.90, dent=0.70)


# -- registering ----------------------------------------------------------------------------------------

def test_register_copies_the_verified_package_under_its_sha(registry: ModelRegistry, packages: dict[str, Path]
                                                            ) -> None:
    model = registry.register(packages["a"], lineage={"snapshot": "s1", "run": "r1"}, metrics={"map50": 0.5})
    sha = sha256_file(packages["a"] / MODEL_FILE)
    assert model.sha256 == sha and model.stage == CANDIDATE
    assert model.path == registry.root / sha and (model.path / MODEL_FILE).read_bytes() == (
        packages["a"] / MODEL_FILE).read_bytes()
    assert model.lineage["snapshot"] == "s1" and model.lineage["package_name"] == "a"
    assert model.metrics == {"map50": 0.5}
    assert [p.name for p in registry.root.iterdir()] == [sha]  # no temporary folder left behind
    again = registry.register(packages["a"], lineage={"other": True})
    assert again.id == model.id and again.lineage == model.lineage
    assert [m.id for m in registry.list()] == [model.id]
    assert [(a.from_stage, a.to_stage) for a in registry.audit(model.id)] == [(None, CANDIDATE)]


def test_tampered_package_is_refused_and_nothing_is_registered(registry: ModelRegistry, packages: dict[str, Path],
                                                               tmp_path: Path) -> None:
    bad = tiny_package(tmp_path / "bad", [BOX, BOX])
    with (bad / MODEL_FILE).open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelPackageError, match="sha256"):
        registry.register(bad)
    assert registry.list() == [] and registry.audit() == []
    assert not registry.root.exists() or list(registry.root.iterdir()) == []


def test_a_damaged_registry_copy_is_replaced_on_register(registry: ModelRegistry, packages: dict[str, Path]) -> None:
    sha = sha256_file(packages["a"] / MODEL_FILE)
    (registry.root / sha).mkdir(parents=True)
    (registry.root / sha / MODEL_FILE).write_bytes(b"half a copy")
    model = registry.register(packages["a"])
    assert sha256_file(model.path / MODEL_FILE) == sha


def test_get_by_id_and_sha_prefix(registry: ModelRegistry, packages: dict[str, Path], db_url: str) -> None:
    a, b = registry.register(packages["a"]), registry.register(packages["b"])
    assert registry.get(a.id) == a and registry.get(str(b.id)) == b
    assert registry.get(a.sha256[:8]) == a and registry.get(b.sha256.upper()) == b
    with pytest.raises(NotFoundError):
        registry.get("999")
    with pytest.raises(NotFoundError):
        registry.get("abc")  # too short to be a prefix, not a number
    # make b's sha share a's first 8 characters: a prefix of 6..8 characters is now ambiguous
    engine = create_engine(normalise_url(db_url))
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE registered_models SET sha256 = :s WHERE id = :i"),
                         {"s": a.sha256[:8] + "0" * 56, "i": b.id})
    finally:
        engine.dispose()
    with pytest.raises(ConflictError, match="ambiguous"):
        registry.get(a.sha256[:8])
    assert registry.get(a.sha256[:9]) == a


def test_champion_bootstrap_only_on_an_empty_registry(registry: ModelRegistry, packages: dict[str, Path]) -> None:
    a = registry.register(packages["a"], stage=CHAMPION)
    assert registry.champion() == a
    with pytest.raises(ConflictError, match="champion exists"):
        registry.register(packages["b"], stage=CHAMPION)
    assert [m.sha256 for m in registry.list()] == [a.sha256]


def test_two_champions_are_impossible_in_the_database(registry: ModelRegistry, packages: dict[str, Path]) -> None:
    registry.register(packages["a"], stage=CHAMPION)
    b = registry.register(packages["b"])
    with pytest.raises(IntegrityError), registry.engine.begin() as conn:
        conn.execute(text("UPDATE registered_models SET stage = 'champion', champion_lock = :t WHERE id = :i"),
                     {"t": True, "i": b.id})


# -- the gate -------------------------------------------------------------------------------------------

GATE_CASES = [
    # (id, candidate metrics, force, reason, promoted?, failing check names)
    ("better", metrics(0.85, 0.55, scratch=0.95, dent=0.75), False, "", True, []),
    ("equal", CHAMP, False, "", True, []),
    ("within tolerance", metrics(0.79, 0.49, scratch=0.89, dent=0.69), False, "", True, []),
    ("worse overall", metrics(0.70, 0.50, scratch=0.90, dent=0.70), False, "", False, ["map50"]),
    ("worse map50_95", metrics(0.80, 0.40, scratch=0.90, dent=0.70), False, "", False, ["map50_95"]),
    ("worse on one class", metrics(0.85, 0.55, scratch=0.99, dent=0.60), False, "", False, ["dent ap50"]),
    ("class missing", metrics(0.85, 0.55, scratch=0.99), False, "", False, ["dent ap50"]),
    ("worse everywhere", metrics(0.1, 0.1, scratch=0.1, dent=0.1), False, "", False,
     ["map50", "map50_95", "dent ap50", "scratch ap50"]),
    ("force without reason", metrics(0.70, 0.50, scratch=0.90, dent=0.70), True, "  ", False, None),
    ("force with reason", metrics(0.70, 0.50, scratch=0.90, dent=0.70), True, "hotfix for new fixture", True, []),
]


@pytest.mark.parametrize(("candidate", "force", "reason", "promoted", "failing"),
                         [c[1:] for c in GATE_CASES], ids=[c[0] for c in GATE_CASES])
def test_promotion_gate(registry: ModelRegistry, packages: dict[str, Path], candidate: dict[str, Any], force: bool,
                        reason: str, promoted: bool, failing: list[str] | None) -> None:
    champ = registry.register(packages["a"], stage=CHAMPION)
    cand = registry.register(packages["b"])
    audit_before = registry.audit()
    holdout = {"candidate": candidate, "champion": CHAMP}
    if not promoted:
        with pytest.raises(PromotionRefused) as refused:
            registry.promote(cand.id, holdout_metrics=holdout, force=force, reason=reason, actor="qa")
        message = str(refused.value)
        if failing is None:
            assert "reason" in message
        else:
            assert f"{len(failing)} of 4 checks failed" in message
            for name in failing:
                line = next(line for line in message.splitlines() if line.strip().startswith(f"{name}:"))
                # both numbers are in the message
                cand_value = candidate[name] if name in candidate else (candidate["per_class"].get(
                    name.split()[0], {}).get("ap50"))
                champ_value = CHAMP[name] if name in CHAMP else CHAMP["per_class"][name.split()[0]]["ap50"]
                assert f"{champ_value:.4f}" in line
                assert (f"{cand_value:.4f}" if cand_value is not None else "missing") in line
        assert registry.champion() == champ and registry.get(cand.id).stage == CANDIDATE
        assert registry.audit() == audit_before
        return
    decision = registry.promote(cand.id, holdout_metrics=holdout, force=force, reason=reason, actor="qa")
    assert decision.promoted and decision.previous_champion_id == champ.id and decision.forced == force
    assert registry.champion() == registry.get(cand.id)
    assert registry.get(champ.id).stage == RETIRED
    assert registry.get(cand.id).previous_champion_id == champ.id
    rows = registry.audit()[len(audit_before):]
    assert [(r.model_id, r.from_stage, r.to_stage, r.forced, r.actor) for r in rows] == [
        (champ.id, CHAMPION, RETIRED, force, "qa"), (cand.id, CANDIDATE, CHAMPION, force, "qa")]
    assert rows[1].reason == reason
    assert rows[1].metrics["candidate"]["map50"] == candidate["map50"]
    assert rows[1].metrics["champion"]["map50"] == CHAMP["map50"]
    if force:
        assert [c["name"] for c in rows[1].metrics["gate"]["checks"] if not c["passed"]] == ["map50"]


def test_no_champion_means_any_candidate_can_be_promoted(registry: ModelRegistry, packages: dict[str, Path]) -> None:
    cand = registry.register(packages["a"])
    decision = registry.promote(cand.id)
    assert decision.promoted and decision.checks == () and decision.previous_champion_id is None
    assert registry.champion() == registry.get(cand.id)


def test_missing_holdout_metrics_refuse_unless_forced(registry: ModelRegistry, packages: dict[str, Path]) -> None:
    registry.register(packages["a"], stage=CHAMPION)
    cand = registry.register(packages["b"])
    with pytest.raises(PromotionRefused, match="candidate holdout metrics: missing"):
        registry.promote(cand.id)
    with pytest.raises(PromotionRefused, match="champion holdout metrics: missing"):
        registry.promote(cand.id, holdout_metrics={"candidate": CHAMP})
    assert registry.promote(cand.id, force=True, reason="no holdout yet").forced


def test_metrics_by_sha_and_from_another_snapshot(registry: ModelRegistry, packages: dict[str, Path]) -> None:
    champ = registry.register(packages["a"], stage=CHAMPION)
    cand = registry.register(packages["b"])
    registry.mark_holdout("f" * 64)
    stale = {cand.sha256: {**CHAMP, "snapshot_id": "e" * 64}, champ.sha256: {**CHAMP, "snapshot_id": "f" * 64}}
    with pytest.raises(PromotionRefused, match="candidate holdout: measured on snapshot eeeeeeeeeeee"):
        registry.promote(cand.id, holdout_metrics=stale)
    fresh = {cand.sha256: {**CHAMP, "snapshot_id": "f" * 64}, champ.sha256: {**CHAMP, "snapshot_id": "f" * 64}}
    decision = registry.promote(cand.id, holdout_metrics=fresh)
    assert decision.holdout_snapshot_id == "f" * 64


def test_promoting_the_champion_again_is_a_conflict(registry: ModelRegistry, packages: dict[str, Path]) -> None:
    champ = registry.register(packages["a"], stage=CHAMPION)
    with pytest.raises(ConflictError, match="already the champion"):
        registry.promote(champ.id)


def test_force_needs_a_reason_and_negative_tolerance_is_refused() -> None:
    assert gate_checks(CHAMP, CHAMP, tolerance=0.0) and all(c.passed for c in gate_checks(CHAMP, CHAMP, tolerance=0))
    worse = gate_checks(metrics(0.799, 0.5, scratch=0.9, dent=0.7), CHAMP, tolerance=0.0)
    assert [c.name for c in worse if not c.passed] == ["map50"]


# -- rollback and audit ----------------------------------------------------------------------------------

def test_rollback_walks_back_through_the_champions(registry: ModelRegistry, packages: dict[str, Path]) -> None:
    with pytest.raises(ConflictError, match="no champion"):
        registry.rollback("ops", "nothing yet")
    a = registry.register(packages["a"])
    registry.promote(a.id)
    with pytest.raises(ConflictError, match="no previous champion"):
        registry.rollback("ops", "first one")
    b, c = registry.register(packages["b"]), registry.register(packages["c"])
    better = {"candidate": metrics(0.9, 0.6, scratch=1.0, dent=1.0), "champion": CHAMP}
    registry.promote(b.id, holdout_metrics=better)
    registry.promote(c.id, holdout_metrics=better)
    assert registry.champion() == registry.get(c.id)

    restored = registry.rollback("ops", "false rejects on line 3")
    assert restored.id == b.id and restored.stage == CHAMPION and registry.champion() == restored
    assert registry.get(c.id).stage == RETIRED
    assert registry.rollback("ops", "still bad").id == a.id
    assert [m.stage for m in registry.list()] == [CHAMPION, RETIRED, RETIRED]

    trail = [(r.model_id, r.from_stage, r.to_stage) for r in registry.audit()]
    assert trail == [
        (a.id, None, CANDIDATE), (a.id, CANDIDATE, CHAMPION),
        (b.id, None, CANDIDATE), (c.id, None, CANDIDATE),
        (a.id, CHAMPION, RETIRED), (b.id, CANDIDATE, CHAMPION),
        (b.id, CHAMPION, RETIRED), (c.id, CANDIDATE, CHAMPION),
        (c.id, CHAMPION, RETIRED), (b.id, RETIRED, CHAMPION),
        (b.id, CHAMPION, RETIRED), (a.id, RETIRED, CHAMPION),
    ]
    rollback_rows = registry.audit(c.id)[-1:]
    assert rollback_rows[0].actor == "ops" and "false rejects on line 3" in rollback_rows[0].reason
    assert all(r.at for r in registry.audit())


def test_holdout_is_stored_and_replaced(registry: ModelRegistry, tmp_path: Path) -> None:
    assert registry.holdout() is None
    registry.mark_holdout("a" * 64, manifest=tmp_path / "m.json")
    held = registry.holdout()
    assert held is not None and held.snapshot_id == "a" * 64 and held.manifest == (tmp_path / "m.json").resolve()
    registry.mark_holdout("b" * 64)
    held = registry.holdout()
    assert held is not None and held.snapshot_id == "b" * 64 and held.manifest is None


# -- evaluation through the runtime ------------------------------------------------------------------------

def holdout_snapshot(folder: Path) -> Snapshot:
    """Four white frames with a scratch where the tiny model ``a`` puts its box, one black negative.

    Box coordinates are floats: ``Snapshot.id`` hashes ints and floats differently, so a snapshot built
    with int boxes does not load back from its own manifest."""
    entries = []
    for i, value in enumerate([255, 254, 253, 252, 0]):
        path = write_image(folder / f"{i}.png", solid_image(value))
        boxes = (LabeledBox.of("scratch", 22.0, 22.0, 42.0, 42.0),) if value else ()
        entries.append(SnapshotEntry(LabeledImage(path, 64, 64, boxes, sha256_file(path)), "val"))
    return Snapshot(("scratch", "dent"), tuple(entries))


def test_evaluate_for_gate_and_promote_on_real_numbers(registry: ModelRegistry, packages: dict[str, Path],
                                                       tmp_path: Path) -> None:
    snapshot = holdout_snapshot(tmp_path / "holdout")
    registry.mark_holdout(snapshot.id)
    good, bad = registry.register(packages["a"], stage=CHAMPION), registry.register(packages["b"])
    good_m, bad_m = evaluate_for_gate(good, snapshot), evaluate_for_gate(bad, snapshot)
    assert good_m["map50"] == pytest.approx(1.0, abs=0.01) and bad_m["map50"] == pytest.approx(0.0, abs=0.01)
    assert good_m["snapshot_id"] == snapshot.id and good_m["model_sha256"] == good.sha256
    with pytest.raises(PromotionRefused, match=r"scratch ap50: candidate 0\.0000 < champion 0\.99"):
        registry.promote(bad.id, holdout_metrics={"candidate": bad_m, "champion": good_m})
    assert registry.champion() == good


# -- the CLI (mounted by api/cli/main.py under ``qcline models``) ---------------------------------------------

def cli(data_dir: Path, *args: str) -> Any:
    from typer.testing import CliRunner

    from api.cli.models import registry_app

    # these tests start from an empty registry (a fresh install's bundled champion: tests/api/cli/test_first_steps)
    return CliRunner().invoke(registry_app, [*args, "--data-dir", str(data_dir)], env={"QC_BUNDLED_CHAMPION": "0"})


def cli_json(data_dir: Path, *args: str) -> Any:
    result = cli(data_dir, *args, "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    import json

    return json.loads(result.stdout.strip().splitlines()[-1])


def test_cli_register_list_promote_rollback_audit(packages: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    snapshot = holdout_snapshot(tmp_path / "holdout")
    manifest = snapshot.save(tmp_path / "snapshots")

    good = cli_json(data, "register", str(packages["a"]))
    assert good["stage"] == CANDIDATE and Path(good["path"]) == data / "models" / good["sha256"]
    bad = cli_json(data, "register", str(packages["b"]))
    listed = cli_json(data, "list")
    assert [(m["id"], m["stage"]) for m in listed] == [(good["id"], CANDIDATE), (bad["id"], CANDIDATE)]
    assert set(listed[0]) >= {"id", "stage", "sha256", "path", "metrics"}

    # no champion yet: promoted without a holdout, nothing to compare
    assert cli_json(data, "promote", str(good["id"]))["promoted"]

    # a champion exists and no holdout is marked: refused
    refused = cli(data, "promote", str(bad["id"]))
    assert isinstance(refused.exception, PromotionRefused) and "no holdout" in str(refused.exception)

    held = cli_json(data, "holdout", str(manifest))
    assert held["snapshot_id"] == snapshot.id
    assert cli_json(data, "holdout")["snapshot_id"] == snapshot.id

    # the gate evaluates both on the holdout through the runtime: the dent model misses every scratch
    refused = cli(data, "promote", bad["sha256"][:10])
    assert isinstance(refused.exception, PromotionRefused)
    assert "scratch ap50: candidate 0.0000 < champion 0.99" in str(refused.exception)
    assert cli_json(data, "list")[0]["stage"] == CHAMPION

    forced_without_reason = cli(data, "promote", str(bad["id"]), "--force")
    assert isinstance(forced_without_reason.exception, PromotionRefused)
    decision = cli_json(data, "promote", str(bad["id"]), "--force", "--reason", "new fixture", "--actor", "eve",
                        "--dataset", snapshot.id[:16])
    assert decision["forced"] and decision["previous_champion_id"] == good["id"]
    assert decision["holdout_snapshot_id"] == snapshot.id

    restored = cli_json(data, "rollback", "--reason", "false rejects", "--actor", "ops")
    assert restored["id"] == good["id"] and restored["stage"] == CHAMPION

    trail = cli_json(data, "audit")
    assert [(r["model_id"], r["to_stage"], r["forced"], r["actor"]) for r in trail[-4:]] == [
        (good["id"], RETIRED, True, "eve"), (bad["id"], CHAMPION, True, "eve"),
        (bad["id"], RETIRED, False, "ops"), (good["id"], CHAMPION, False, "ops")]
    assert trail[-3]["reason"] == "new fixture"
    assert trail[-3]["metrics"]["candidate"]["snapshot_id"] == snapshot.id
    assert len(cli_json(data, "audit", str(bad["id"]))) == 3

    text_out = cli(data, "list")
    assert text_out.exit_code == 0 and "champion" in text_out.stdout


def test_cli_errors_are_qc_errors(packages: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert isinstance(cli(data, "promote", "42").exception, NotFoundError)
    assert isinstance(cli(data, "rollback").exception, ConflictError)
    assert isinstance(cli(data, "holdout").exception, NotFoundError)
    assert isinstance(cli(data, "holdout", "deadbeef").exception, NotFoundError)
    bad = tmp_path / "bad"
    tiny_package(bad, [BOX, BOX, BOX])
    (bad / MODEL_FILE).write_bytes(b"not onnx")
    assert isinstance(cli(data, "register", str(bad)).exception, ModelPackageError)
    assert cli_json(data, "list") == []
