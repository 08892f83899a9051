"""serving: the HTTP inference service for every domain's production prompts.

One frozen backbone copy per replica (per distinct backbone), every domain's prompts
under an alias (`production` by default), dynamic batches that mix domains, alias moves
picked up live. Embedded under uvicorn (`mpt serve`) or on Ray Serve (`mpt serve --ray`);
batch prediction over Ray Data (`mpt predict`). Imports `registry` and `mpt_core` only.

    from serving import create_app, ServeSettings
    app = create_app(ServeSettings(alias="staging"))     # any ASGI server
"""

from .app import create_app
from .settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
