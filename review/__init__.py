"""review: the reviewers' web pages. Candidate vs production on the same split of the same
data version (metrics, per-class deltas against the policy, confusion matrices, training
curve, disagreement thumbnails, lineage), decisions, history and rollback.

FastAPI + Jinja2, server-rendered, assets shipped in the package. Imports `registry` only
(never `flows`, `serving` or torch); the registry enforces every rule, the pages show them.

    from review import create_app
    app = create_app(PromptRegistry.from_settings())     # `mpt review` serves it on uvicorn
"""

from .app import create_app
from .settings import ReviewSettings

__all__ = ["ReviewSettings", "create_app"]
