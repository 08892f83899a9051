"""registry: the SQL prompt registry (versions, lineage, aliases, reviewed promotions,
alias history, users and roles, audit log, review evidence) and its content-addressed
artifact store. No flows, Prefect, Ray or torch.

    from registry import PromptRegistry, Policy
    reg = PromptRegistry.from_settings()     # MPT_DATABASE_URL, MPT_ARTIFACT_STORE, MPT_HOME

Names are imported on first use: `from registry import RegistrySettings, ROLES` loads
neither SQLAlchemy nor Alembic (the CLI's start-up), `PromptRegistry` does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "PRODUCTION": "constants",
    "PromptRegistry": "api",
    "open_registry": "api",
    "ConflictError": "errors",
    "InvalidRecord": "errors",
    "NotFoundError": "errors",
    "PermissionDenied": "errors",
    "RegistryError": "errors",
    "RegistryUnavailable": "errors",
    "RuleViolation": "errors",
    "upgrade": "migrate",
    "Policy": "policy",
    "ShadowRule": "policy",
    "evaluate_policy": "policy",
    "AliasInfo": "records",
    "AuditEntry": "records",
    "DataVersionInfo": "records",
    "DriftPoint": "records",
    "HistoryEntry": "records",
    "MonitoringReport": "records",
    "MonitoringSettings": "records",
    "MonitorTarget": "records",
    "PredictionSet": "records",
    "RequestInfo": "records",
    "ReviewEvidence": "records",
    "ShadowEvidence": "records",
    "ShadowSample": "records",
    "ShadowTally": "records",
    "TaskEvidence": "records",
    "UserInfo": "records",
    "VersionInfo": "records",
    "ROLES": "roles",
    "role_at_least": "roles",
    "RegistrySettings": "settings",
}

__all__ = [
    "PRODUCTION",
    "ROLES",
    "AliasInfo",
    "AuditEntry",
    "ConflictError",
    "DataVersionInfo",
    "DriftPoint",
    "HistoryEntry",
    "InvalidRecord",
    "MonitorTarget",
    "MonitoringReport",
    "MonitoringSettings",
    "NotFoundError",
    "PermissionDenied",
    "Policy",
    "PredictionSet",
    "PromptRegistry",
    "RegistryError",
    "RegistrySettings",
    "RegistryUnavailable",
    "RequestInfo",
    "ReviewEvidence",
    "RuleViolation",
    "ShadowEvidence",
    "ShadowRule",
    "ShadowSample",
    "ShadowTally",
    "TaskEvidence",
    "UserInfo",
    "VersionInfo",
    "evaluate_policy",
    "open_registry",
    "role_at_least",
    "upgrade",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'registry' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for type checkers and IDEs
    from .api import PromptRegistry, open_registry
    from .constants import PRODUCTION
    from .errors import (
        ConflictError,
        InvalidRecord,
        NotFoundError,
        PermissionDenied,
        RegistryError,
        RegistryUnavailable,
        RuleViolation,
    )
    from .migrate import upgrade
    from .policy import Policy, ShadowRule, evaluate_policy
    from .records import (
        AliasInfo,
        AuditEntry,
        DataVersionInfo,
        DriftPoint,
        HistoryEntry,
        MonitoringReport,
        MonitoringSettings,
        MonitorTarget,
        PredictionSet,
        RequestInfo,
        ReviewEvidence,
        ShadowEvidence,
        ShadowSample,
        ShadowTally,
        TaskEvidence,
        UserInfo,
        VersionInfo,
    )
    from .roles import ROLES, role_at_least
    from .settings import RegistrySettings
