"""``ModelRegistry``: registered packages and their stages in the results database, with an audit trail.

Stations must only ever run a model that (a) is byte-for-byte the package that was evaluated and (b) was
not worse than the model it replaced on the same frozen benchmark. So packages are stored under
``<root>/<sha256>/`` (``storage.PackageStore``), their stage lives in the results database next to the
inspections that cite the same sha256, the gate (``gate``) judges every promotion, and every stage change
leaves an audit row saying who, why, whether the gate was overridden, and on which numbers.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from inspection.errors import ConflictError, ModelPackageError, NotFoundError
from inspection.model_package import ModelPackage
from inspection.store.db import Database, describe, open_database
from inspection.store.tables.base import utcnow
from inspection.store.tables.registry import ModelAuditRow, RegisteredModelRow, RegistrySettingRow
from models.registry.gate import PromotionDecision, PromotionRefusedError, judge
from models.registry.records import (
    CANDIDATE,
    CHAMPION,
    RETIRED,
    STAGES,
    DetectionMetricsJSON,
    Holdout,
    ModelAuditEntry,
    RegisteredModel,
    Stage,
)
from models.registry.storage import PackageStore

log = logging.getLogger(__name__)

MAX_ROW_ID = 2**63 - 1
"""Ids are 64-bit: a larger number (from a URL, say) names no model rather than overflowing the driver."""

MIN_SHA_PREFIX = 6
"""Shorter hex strings are too likely to match several packages (and to be confused with numeric ids)."""

HOLDOUT_KEY = "holdout"


def _to_model(row: RegisteredModelRow) -> RegisteredModel:
    return RegisteredModel(id=row.id, stage=row.stage,  # type: ignore[arg-type]
                           sha256=row.sha256, name=row.name, path=Path(row.path), metrics=dict(row.metrics or {}),
                           lineage=dict(row.lineage or {}), created_at=row.created_at, updated_at=row.updated_at,
                           previous_champion_id=row.previous_champion_id)


class ModelRegistry(Database):
    """Registered model packages and their stages, in the results database; packages under ``root``.

    Thread- and process-safe in the way the results store is: each call is one transaction, and the
    invariants (one package per sha256, at most one champion) are UNIQUE constraints, so a race ends in
    ``ConflictError`` instead of a second champion.
    """

    label = "model registry"
    integrity_is_conflict = True  # two promotions racing: the loser is told to retry

    def __init__(self, engine: Engine, root: Path) -> None:
        super().__init__(engine)
        self.root = Path(root)
        self.packages = PackageStore(self.root)

    @classmethod
    def open(cls, url: str, root: Path) -> ModelRegistry:
        """Connect to ``url`` and migrate it to head (the registry tables come with migration 0002)."""
        return cls(open_database(url), Path(root))

    def __repr__(self) -> str:
        return f"ModelRegistry({describe(self.engine.url)}, root={self.root})"

    # -- registering -----------------------------------------------------------------------------------

    def register(self, package_dir: Path | str, *, stage: Stage = CANDIDATE, lineage: dict[str, Any] | None = None,
                 metrics: dict[str, Any] | None = None, actor: str = "cli", reason: str = "") -> RegisteredModel:
        """Verify the package and keep a copy under ``<root>/<sha256>/``; idempotent per sha256.

        The copy is written to a temporary folder inside ``root``, verified again (the source could change
        between the first check and the copy), then renamed into place, so ``<root>/<sha256>/`` is either
        absent or complete. Registering the same bytes again returns the existing record unchanged.
        ``stage="champion"`` bootstraps an empty registry and is refused once a champion exists: replacing
        one goes through ``promote`` and its gate. ``metrics`` default to the package metadata's.
        """
        if stage not in STAGES:
            raise ModelPackageError(f"stage {stage!r} is not one of {STAGES}")
        package = ModelPackage.load(package_dir, verify=True)
        sha = package.metadata.sha256
        existing = self._find_sha(sha)
        if existing is not None:
            log.info("model %s already registered as id %d (%s)", sha[:12], existing.id, existing.stage)
            return existing
        stored = self.packages.copy_in(package)
        auto_lineage = {"source": str(Path(package_dir).resolve()), "package_name": package.metadata.name,
                        "dataset": package.metadata.dataset, "training": package.metadata.training}
        now = utcnow()
        row = RegisteredModelRow(
            sha256=sha, name=package.metadata.name, stage=stage, champion_lock=True if stage == CHAMPION else None,
            path=str(stored), metrics=dict(package.metadata.metrics if metrics is None else metrics),
            lineage={**auto_lineage, **(lineage or {})}, created_at=now, updated_at=now)
        try:
            with self._session(f"registering {sha[:12]}") as session:
                if stage == CHAMPION and self._champion_row(session) is not None:
                    raise ConflictError("a champion exists already: register as candidate and promote it "
                                        "through the gate")
                session.add(row)
                session.flush()
                session.add(ModelAuditRow(model_id=row.id, from_stage=None, to_stage=stage, actor=actor,
                                          reason=reason or "registered", forced=False,
                                          metrics={"registered": row.metrics}, at=now))
        except ConflictError:
            concurrent = self._find_sha(sha)  # the same package registered by someone else meanwhile
            if concurrent is not None:
                return concurrent
            raise
        log.info("registered model %s as id %d (%s) at %s", sha[:12], row.id, stage, stored)
        return _to_model(row)

    # -- reading ---------------------------------------------------------------------------------------

    def _find_sha(self, sha: str) -> RegisteredModel | None:
        with self._session("reading a model") as session:
            row = session.scalars(select(RegisteredModelRow).where(RegisteredModelRow.sha256 == sha)).first()
            return None if row is None else _to_model(row)

    def get(self, id_or_sha_prefix: int | str) -> RegisteredModel:
        """By numeric id, or by a sha256 prefix of at least ``MIN_SHA_PREFIX`` hex characters.

        A string that could be both (``"123456"``) and names two different models is ambiguous and raises
        ``ConflictError``, as does a prefix that matches several packages: guessing could promote the
        wrong model.
        """
        key = str(id_or_sha_prefix).strip().lower()
        with self._session("reading a model") as session:
            matches: dict[int, RegisteredModelRow] = {}
            if key.isascii() and key.isdigit() and int(key) <= MAX_ROW_ID:  # beyond 64 bits: no such id
                row = session.get(RegisteredModelRow, int(key))
                if row is not None:
                    matches[row.id] = row
            if len(key) >= MIN_SHA_PREFIX and all(c in "0123456789abcdef" for c in key):
                for row in session.scalars(select(RegisteredModelRow)
                                           .where(RegisteredModelRow.sha256.startswith(key, autoescape=True))
                                           .limit(10)):
                    matches[row.id] = row
            if not matches:
                raise NotFoundError(f"model {id_or_sha_prefix!r} is not registered (use an id or a sha256 "
                                    f"prefix of at least {MIN_SHA_PREFIX} characters)")
            if len(matches) > 1:
                named = ", ".join(f"{r.id}:{r.sha256[:12]}" for r in sorted(matches.values(), key=lambda r: r.id))
                raise ConflictError(f"model {id_or_sha_prefix!r} is ambiguous: it matches {named}")
            return _to_model(next(iter(matches.values())))

    def list(self) -> builtins.list[RegisteredModel]:
        with self._session("listing models") as session:
            return [_to_model(r) for r in session.scalars(select(RegisteredModelRow).order_by(RegisteredModelRow.id))]

    @staticmethod
    def _champion_row(session: Session) -> RegisteredModelRow | None:
        return session.scalars(select(RegisteredModelRow).where(RegisteredModelRow.stage == CHAMPION)
                               .with_for_update()).first()

    def champion(self) -> RegisteredModel | None:
        with self._session("reading the champion") as session:
            row = session.scalars(select(RegisteredModelRow).where(RegisteredModelRow.stage == CHAMPION)).first()
            return None if row is None else _to_model(row)

    def ensure_bundled_champion(self, package_dir: Path | str, *, actor: str = "qcline") -> RegisteredModel | None:
        """Give a fresh registry its first champion: the bundled package, so the promotion gate always has
        something to compare a candidate with (a 1-epoch model must not replace a good default unchecked).

        Idempotent and conservative: nothing happens once any model has ever been champion (a registry whose
        engineers rolled back to nothing keeps that choice). Returns the model it registered, else ``None``.
        """
        with self._session("checking for a champion") as session:
            ever = session.scalars(select(ModelAuditRow.id).where(ModelAuditRow.to_stage == CHAMPION).limit(1)).first()
            if ever is not None:
                return None
        try:
            model = self.register(package_dir, stage=CHAMPION, actor=actor,
                                  reason="bundled default model: first champion of a fresh install")
        except ConflictError:  # another process bootstrapped it (or promoted one) meanwhile
            return None
        except ModelPackageError as exc:  # a damaged install: say so, the station still names its model
            log.warning("cannot register the bundled model %s as first champion: %s", package_dir, exc)
            return None
        if model.stage != CHAMPION:  # the same bytes were registered as a candidate before: leave the gate to it
            return None
        log.info("registered the bundled model %s as the first champion (id %d)", model.sha256[:12], model.id)
        return model

    def audit(self, model_id: int | None = None) -> builtins.list[ModelAuditEntry]:
        """Audit rows, oldest first; of one model when ``model_id`` is given."""
        with self._session("reading the audit log") as session:
            query = select(ModelAuditRow).order_by(ModelAuditRow.id)
            if model_id is not None:
                query = query.where(ModelAuditRow.model_id == model_id)
            return [ModelAuditEntry.of(r) for r in session.scalars(query)]

    # -- the holdout -------------------------------------------------------------------------------------

    def mark_holdout(self, snapshot_id: str, *, manifest: Path | None = None, actor: str = "cli") -> Holdout:
        """Freeze the benchmark snapshot promotions are judged on (replacing the previous one).

        Changing the holdout makes older gate numbers incomparable, which is why metrics that carry a
        ``snapshot_id`` other than the holdout's fail the gate.
        """
        snapshot_id = snapshot_id.strip()
        if not snapshot_id:
            raise ConflictError("holdout snapshot id is empty")
        now = utcnow()
        value = {"snapshot_id": snapshot_id, "manifest": str(Path(manifest).resolve()) if manifest else None,
                 "actor": actor}
        with self._session("marking the holdout") as session:
            row = session.get(RegistrySettingRow, HOLDOUT_KEY, with_for_update=True)
            if row is None:
                session.add(RegistrySettingRow(key=HOLDOUT_KEY, value=value, updated_at=now))
            else:
                row.value, row.updated_at = value, now
        log.info("holdout snapshot is now %s (by %s)", snapshot_id[:12], actor)
        return Holdout(snapshot_id, Path(value["manifest"]) if value["manifest"] else None, now, {"actor": actor})

    def holdout(self) -> Holdout | None:
        with self._session("reading the holdout") as session:
            row = session.get(RegistrySettingRow, HOLDOUT_KEY)
            if row is None:
                return None
            value = dict(row.value)
            manifest = value.get("manifest")
            return Holdout(str(value["snapshot_id"]), Path(manifest) if manifest else None, row.updated_at,
                           {k: v for k, v in value.items() if k not in ("snapshot_id", "manifest")})

    # -- stage changes ------------------------------------------------------------------------------------

    def promote(self, model_id: int | str, *, holdout_metrics: Mapping[str, DetectionMetricsJSON] | None = None,
                tolerance: float = 0.01, force: bool = False, reason: str = "",
                actor: str = "cli") -> PromotionDecision:
        """Make ``model_id`` the champion if it passes the gate; the old champion becomes ``retired``.

        The gate, on the frozen holdout: the candidate passes when

        * overall ``map50``    >= champion's ``map50``    - ``tolerance``, and
        * overall ``map50_95`` >= champion's ``map50_95`` - ``tolerance``, and
        * for every class of the champion: ``ap50`` >= champion's ``ap50`` - ``tolerance``;

        so a model that trades one defect class for another is refused even when the average improves:
        missing a class of defect the line used to catch is a recall regression the customer sees. Metrics
        measured on another snapshot than the marked holdout fail too. ``holdout_metrics`` holds both
        evaluations, keyed ``"candidate"`` and ``"champion"`` (or by their sha256). Refusal raises
        ``PromotionRefusedError`` listing every failing check with both numbers.

        With no champion yet, any candidate is promoted (nothing to compare with). ``force=True`` skips
        the gate but needs a non-empty ``reason``; it is recorded in the audit with the checks it
        overrode. Stage changes and their audit rows are one transaction: on any failure the champion is
        untouched.
        """
        if tolerance < 0:
            raise PromotionRefusedError(f"tolerance must be >= 0, got {tolerance}")
        if force and not reason.strip():
            raise PromotionRefusedError("a forced promotion needs a reason (it is recorded in the audit log)")
        target = self.get(model_id)
        holdout = self.holdout()
        holdout_id = holdout.snapshot_id if holdout else None
        with self._session(f"promoting model {target.id}") as session:
            row = session.get(RegisteredModelRow, target.id, with_for_update=True)
            assert row is not None  # records are never deleted
            if row.stage == CHAMPION:
                raise ConflictError(f"model {row.id} ({row.sha256[:12]}) is already the champion")
            old = self._champion_row(session)
            metrics_by_role = self._metrics_for(holdout_metrics, row, old)
            checks = [] if old is None else judge(metrics_by_role.get("candidate"), metrics_by_role.get("champion"),
                                                  tolerance=tolerance, holdout_snapshot_id=holdout_id)
            failed = [c for c in checks if not c.passed]
            if failed and not force:
                lines = "\n  ".join(c.describe(tolerance) for c in failed)
                raise PromotionRefusedError(
                    f"model {row.id} ({row.sha256[:12]}) is not promoted over champion {old.id if old else '-'} "
                    f"({old.sha256[:12] if old else '-'}): {len(failed)} of {len(checks)} checks failed "
                    f"(tolerance {tolerance}):\n  {lines}")
            decision = PromotionDecision(
                model_id=row.id, sha256=row.sha256, promoted=True, forced=force,
                previous_champion_id=old.id if old else None, tolerance=tolerance, checks=tuple(checks),
                reason=reason, holdout_snapshot_id=holdout_id)
            snapshot = {"gate": decision.to_json(), **{k: dict(v) for k, v in metrics_by_role.items()}}
            now = utcnow()
            if old is not None:
                self._move(session, old, CHAMPION, RETIRED, now)
                session.add(ModelAuditRow(model_id=old.id, from_stage=CHAMPION, to_stage=RETIRED, actor=actor,
                                          reason=f"replaced by model {row.id}" + (f": {reason}" if reason else ""),
                                          forced=force, metrics=snapshot, at=now))
                session.flush()  # release the champion slot before the new champion takes it
            from_stage = row.stage
            self._move(session, row, from_stage, CHAMPION, now, previous_champion_id=old.id if old else None)
            session.add(ModelAuditRow(model_id=row.id, from_stage=from_stage, to_stage=CHAMPION, actor=actor,
                                      reason=reason, forced=force, metrics=snapshot, at=now))
        log.info("model %d (%s) promoted to champion by %s%s; previous champion %s", decision.model_id,
                 decision.sha256[:12], actor, " (FORCED)" if force else "", decision.previous_champion_id)
        return decision

    @staticmethod
    def _metrics_for(holdout_metrics: Mapping[str, DetectionMetricsJSON] | None, candidate: RegisteredModelRow,
                     champion: RegisteredModelRow | None) -> dict[str, DetectionMetricsJSON]:
        found: dict[str, DetectionMetricsJSON] = {}
        if not holdout_metrics:
            return found
        for role, row in (("candidate", candidate), ("champion", champion)):
            value = holdout_metrics.get(role)
            if value is None and row is not None:
                value = holdout_metrics.get(row.sha256)
            if value is not None:
                found[role] = dict(value)
        return found

    @staticmethod
    def _move(session: Session, row: RegisteredModelRow, from_stage: str, to_stage: Stage, now: datetime,
              **extra: Any) -> None:
        """Conditional update: it only applies if nobody changed the stage since we read it."""
        result = session.execute(
            update(RegisteredModelRow)
            .where(RegisteredModelRow.id == row.id, RegisteredModelRow.stage == from_stage)
            .values(stage=to_stage, champion_lock=True if to_stage == CHAMPION else None, updated_at=now, **extra)
            .execution_options(synchronize_session="fetch"))
        if getattr(result, "rowcount", 1) != 1:
            raise ConflictError(f"model {row.id} is no longer {from_stage}: changed concurrently, retry")

    def rollback(self, actor: str = "cli", reason: str = "") -> RegisteredModel:
        """Put the champion's predecessor back as champion; the current one becomes ``retired``.

        Each champion remembers whom it replaced, so repeated rollbacks walk back through the history.
        Raises ``ConflictError`` when there is no champion or it replaced nobody.
        """
        with self._session("rolling back the champion") as session:
            current = self._champion_row(session)
            if current is None:
                raise ConflictError("there is no champion to roll back")
            if current.previous_champion_id is None:
                raise ConflictError(f"champion {current.id} ({current.sha256[:12]}) has no previous champion "
                                    "to roll back to")
            previous = session.get(RegisteredModelRow, current.previous_champion_id, with_for_update=True)
            assert previous is not None
            now = utcnow()
            note = reason or "rollback"
            snapshot = {"rolled_back": current.sha256, "restored": previous.sha256}
            self._move(session, current, CHAMPION, RETIRED, now)
            session.add(ModelAuditRow(model_id=current.id, from_stage=CHAMPION, to_stage=RETIRED, actor=actor,
                                      reason=f"rolled back: {note}", forced=False, metrics=snapshot, at=now))
            session.flush()
            from_stage = previous.stage
            self._move(session, previous, from_stage, CHAMPION, now)
            session.add(ModelAuditRow(model_id=previous.id, from_stage=from_stage, to_stage=CHAMPION, actor=actor,
                                      reason=f"restored by rollback: {note}", forced=False, metrics=snapshot, at=now))
            session.flush()
            session.refresh(previous)
            restored = _to_model(previous)
        log.warning("rollback by %s: model %d (%s) is champion again (%s)", actor, restored.id,
                    restored.sha256[:12], note)
        return restored

