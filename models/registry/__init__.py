"""The model registry: content-addressed packages, one champion, a promotion gate and an audit trail.

``records`` (stages, ``RegisteredModel``, ``Holdout``), ``gate`` (the promotion rule, pure),
``storage`` (the verified package copies), ``repository`` (``ModelRegistry``: the stages in the results
database). How a package is measured for the gate is ``models.evaluation``.
"""

from models.registry.gate import GateCheck, PromotionDecision, PromotionRefused, PromotionRefusedError, gate_checks
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
from models.registry.repository import ModelRegistry

__all__ = [
    "CANDIDATE", "CHAMPION", "RETIRED", "STAGES", "DetectionMetricsJSON", "GateCheck", "Holdout",
    "ModelAuditEntry", "ModelRegistry",
    "PromotionDecision", "PromotionRefused", "PromotionRefusedError", "RegisteredModel", "Stage", "gate_checks",
]
