"""registry: the SQL prompt registry (versions, lineage, aliases, reviewed promotions,
alias history) and its content-addressed artifact store. No flows, Prefect, Ray or torch.

    from registry import PromptRegistry, Policy
    reg = PromptRegistry.from_settings()     # MPT_DATABASE_URL, MPT_ARTIFACT_STORE, MPT_HOME
"""

from .api import PRODUCTION, PromptRegistry, open_registry
from .errors import ConflictError, NotFoundError, RegistryError, RuleViolation
from .migrate import upgrade
from .policy import Policy, evaluate_policy
from .records import AliasInfo, DataVersionInfo, HistoryEntry, RequestInfo, VersionInfo
from .settings import RegistrySettings

__all__ = [
    "PRODUCTION",
    "AliasInfo",
    "ConflictError",
    "DataVersionInfo",
    "HistoryEntry",
    "NotFoundError",
    "Policy",
    "PromptRegistry",
    "RegistryError",
    "RegistrySettings",
    "RequestInfo",
    "RuleViolation",
    "VersionInfo",
    "evaluate_policy",
    "open_registry",
    "upgrade",
]
