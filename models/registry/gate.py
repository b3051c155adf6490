"""The promotion gate: is a candidate no worse than the champion on the frozen holdout?

A pure policy over two metrics records (``DetectionMetricsJSON``); ``ModelRegistry.promote`` applies it
inside the transaction that moves the stages, and its docstring states the rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inspection.errors import QCError

_EPS = 1e-9  # float slack so "exactly at the tolerance" passes, as the rule says it does


class PromotionRefusedError(QCError):
    """The promotion gate said no (the candidate is worse than the champion on the holdout), or the
    request cannot be judged (no holdout metrics, ``force`` without a reason). The message lists every
    failing check with both numbers so the engineer sees the whole picture in one go."""


PromotionRefused = PromotionRefusedError
"""Short alias (ruff's naming rule wants the ``Error`` suffix on the class itself)."""


@dataclass(frozen=True)
class GateCheck:
    """One comparison of the gate: ``candidate >= champion - tolerance``."""

    name: str
    candidate: float | None
    champion: float | None
    passed: bool
    detail: str = ""

    def describe(self, tolerance: float) -> str:
        if self.detail:
            return f"{self.name}: {self.detail}"
        cand = "missing" if self.candidate is None else f"{self.candidate:.4f}"
        champ = "missing" if self.champion is None else f"{self.champion:.4f}"
        return f"{self.name}: candidate {cand} < champion {champ} - tolerance {tolerance:.4f}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "candidate": self.candidate, "champion": self.champion, "passed": self.passed,
                "detail": self.detail}


@dataclass(frozen=True)
class PromotionDecision:
    """What ``promote`` did and why; ``checks`` is empty when there was no champion to compare with."""

    model_id: int
    sha256: str
    promoted: bool
    forced: bool
    previous_champion_id: int | None
    tolerance: float
    checks: tuple[GateCheck, ...] = ()
    reason: str = ""
    holdout_snapshot_id: str | None = None

    @property
    def failed_checks(self) -> tuple[GateCheck, ...]:
        return tuple(c for c in self.checks if not c.passed)

    def to_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "sha256": self.sha256, "promoted": self.promoted, "forced": self.forced,
                "previous_champion_id": self.previous_champion_id, "tolerance": self.tolerance,
                "checks": [c.to_json() for c in self.checks], "reason": self.reason,
                "holdout_snapshot_id": self.holdout_snapshot_id}


def _number(raw: Any) -> float | None:
    try:
        return None if raw is None else float(raw)
    except (TypeError, ValueError):
        return None


def gate_checks(candidate: Mapping[str, Any], champion: Mapping[str, Any], *, tolerance: float,
                holdout_snapshot_id: str | None = None) -> list[GateCheck]:
    """Every check of the promotion gate; see ``ModelRegistry.promote`` for the rule.

    Per-class checks run over the champion's classes: a class the champion was measured on and the
    candidate has no number for counts as a failure, since "not measured" must not pass as "no worse".
    """
    checks: list[GateCheck] = []
    if holdout_snapshot_id is not None:
        for role, metrics in (("candidate", candidate), ("champion", champion)):
            measured_on = metrics.get("snapshot_id")
            if measured_on is not None and measured_on != holdout_snapshot_id:
                checks.append(GateCheck(f"{role} holdout", None, None, False,
                                        f"measured on snapshot {str(measured_on)[:12]}, not the frozen holdout "
                                        f"{holdout_snapshot_id[:12]}"))
    for key in ("map50", "map50_95"):
        cand, champ = _number(candidate.get(key)), _number(champion.get(key))
        passed = champ is None or (cand is not None and cand + _EPS >= champ - tolerance)
        checks.append(GateCheck(key, cand, champ, passed))
    cand_classes = candidate.get("per_class") or {}
    for name, row in sorted((champion.get("per_class") or {}).items()):
        champ = _number((row or {}).get("ap50"))
        cand = _number((cand_classes.get(name) or {}).get("ap50"))
        passed = champ is None or (cand is not None and cand + _EPS >= champ - tolerance)
        checks.append(GateCheck(f"{name} ap50", cand, champ, passed))
    return checks


def judge(candidate: Mapping[str, Any] | None, champion: Mapping[str, Any] | None, *, tolerance: float,
          holdout_snapshot_id: str | None = None) -> list[GateCheck]:
    """The gate's checks when there is a champion to beat; a missing evaluation is a failed check, never a pass."""
    if candidate is None or champion is None:
        missing = [r for r, m in (("candidate", candidate), ("champion", champion)) if m is None]
        return [GateCheck(f"{r} holdout metrics", None, None, False,
                          "missing: evaluate both models on the frozen holdout") for r in missing]
    return gate_checks(candidate, champion, tolerance=tolerance, holdout_snapshot_id=holdout_snapshot_id)
