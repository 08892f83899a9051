"""Domain folders: `domains/<name>/domain.yaml` + `data/`; schema, discovery, scaffolding."""

from .discovery import CONFIG_FILE, DATA_DIR, Discovery, Domain, discover, get_domain
from .schema import DomainConfig, DomainConfigError, load_domain_config

__all__ = [
    "CONFIG_FILE",
    "DATA_DIR",
    "Discovery",
    "Domain",
    "DomainConfig",
    "DomainConfigError",
    "discover",
    "get_domain",
    "load_domain_config",
]
