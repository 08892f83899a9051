"""registry: the SQL prompt registry (versions, lineage, aliases, reviewed promotions,
alias history, users and roles, audit log, review evidence) and its content-addressed
artifact store. No flows, Prefect, Ray or torch.

    from registry import PromptRegistry, Policy
    reg = PromptRegistry.from_settings()     # MPT_DATABASE_URL, MPT_ARTIFACT_STORE, MPT_HOME
"""

from .api import PRODUCTION, PromptRegistry, open_registry
from .errors import (
    ConflictError,
    InvalidRecord,
    NotFoundError,
    PermissionDenied,
    RegistryError,
    RuleViolation,
)
from .identity import ROLES, role_at_least
from .migrate import upgrade
from .policy import Policy, evaluate_policy
from .records import (
    AliasInfo,
    AuditEntry,
    DataVersionInfo,
    HistoryEntry,
    PredictionSet,
    RequestInfo,
    UserInfo,
    VersionInfo,
)
from .settings import RegistrySettings

__all__ = [
    "PRODUCTION",
    "ROLES",
    "AliasInfo",
    "AuditEntry",
    "ConflictError",
    "DataVersionInfo",
    "HistoryEntry",
    "InvalidRecord",
    "NotFoundError",
    "PermissionDenied",
    "Policy",
    "PredictionSet",
    "PromptRegistry",
    "RegistryError",
    "RegistrySettings",
    "RequestInfo",
    "RuleViolation",
    "UserInfo",
    "VersionInfo",
    "evaluate_policy",
    "open_registry",
    "role_at_least",
    "upgrade",
]
