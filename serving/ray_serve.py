"""`mpt serve --ray`: the same app on Ray Serve, in replicas behind Ray's HTTP proxy.

Each replica runs the app (its lifespan loads one copy of each distinct backbone and
every domain's prompts, then follows the registry), batches the requests it receives
across domains, and gets one GPU when the cluster has GPUs (default: one replica per
GPU), else one CPU (default: one replica). The replicas open the registry from the
settings resolved here, so they need the same database and artifact store URLs to be
reachable, and this code importable, on every node.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass

from cluster.ray import Connection, connect, restore_env
from registry import RegistrySettings

from .app import create_app
from .errors import ServingError
from .settings import ServeSettings

APP_NAME = "mpt-serving"
MAX_ONGOING_REQUESTS = 64
"""Concurrent requests a replica takes, so that the batcher has items of several
requests (and domains) to batch; Ray Serve's default of 5 would cap batches."""

log = logging.getLogger("serving")


@dataclass(frozen=True)
class RayServing:
    url: str
    replicas: int
    gpus_per_replica: int
    address: str
    connection: Connection
    """How this process reached Ray: a local Ray started for this app stops with it."""


def resolved(registry_settings: RegistrySettings | None) -> RegistrySettings:
    """Concrete database and store URLs, so replicas do not depend on their environment."""
    s = registry_settings or RegistrySettings()
    return RegistrySettings(
        home=s.home,
        database_url=s.database,
        artifact_store=s.store_url,
        artifact_s3_endpoint=s.artifact_s3_endpoint,
    )


def deployment(
    settings: ServeSettings,
    registry_settings: RegistrySettings,
    *,
    replicas: int,
    gpus: int,
):
    """The Serve application: the FastAPI app as the ingress of a replicated deployment."""
    from ray import serve

    cpus = 0 if gpus else 1
    threads = settings.threads or (None if gpus else cpus)
    app = create_app(settings.model_copy(update={"threads": threads}), registry_settings)

    @serve.deployment(
        name="MptServing",
        num_replicas=replicas,
        ray_actor_options={"num_gpus": gpus, "num_cpus": cpus},
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
    )
    @serve.ingress(app)
    class MptServing:
        """One replica: the app's lifespan holds its backbones, prompts and batcher."""

    return MptServing.bind()


def deploy(
    settings: ServeSettings,
    registry_settings: RegistrySettings | None = None,
    *,
    connection: Connection,
    replicas: int | None = None,
) -> RayServing:
    """Start (or update) the app on the cluster `connection` reached; returns once its
    replicas are up."""
    import ray
    from ray import serve

    quiet_serve()
    cluster_gpus = int(ray.cluster_resources().get("GPU", 0))
    gpus = 1 if cluster_gpus else 0
    n = replicas or max(1, cluster_gpus)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(
        deployment(settings, resolved(registry_settings), replicas=n, gpus=gpus),
        name=APP_NAME,
        route_prefix="/",
    )
    return RayServing(
        url=f"http://{settings.host}:{settings.port}",
        replicas=n,
        gpus_per_replica=gpus,
        address=ray.get_runtime_context().gcs_address,
        connection=connection,
    )


def quiet_serve() -> None:
    """Ray Serve's INFO lines in this process (started, connecting to the Serve it just
    started, "new http_options will not be applied" although they were, deleting the app)
    are not for a user of `mpt serve --ray`, who gets one line saying where it serves.
    Its warnings and errors still print, and the replicas log as they do."""
    from ray.serve._private.constants import SERVE_LOGGER_NAME

    logging.getLogger(SERVE_LOGGER_NAME).setLevel(logging.WARNING)


def undeploy(info: RayServing) -> None:
    """Remove the app and disconnect if we connected. A local Ray stops with Serve in it
    (`serve.shutdown()` first would kill Serve's controller while its own graceful
    shutdown runs, which the raylet reports as a failed task); on a cluster Serve stays,
    for the next deployment."""
    import ray
    from ray import serve

    serve.delete(APP_NAME)
    if info.connection.initialised:
        ray.shutdown()


def serve_forever(
    settings: ServeSettings,
    registry_settings: RegistrySettings | None = None,
    *,
    address: str | None = None,
    replicas: int | None = None,
    detach: bool = False,
    on_ready=print,
) -> None:
    """Deploy, then hold until Ctrl-C / SIGTERM and remove the app (unless `detach`)."""
    if detach and not address:
        raise ServingError(
            "--detach needs an existing cluster (--address ADDR): a local Ray stops with "
            "this process"
        )
    env = dict(os.environ)  # ray.init exports RAY_* variables into this process
    previous = signal.getsignal(signal.SIGTERM)
    try:
        connection = connect(address)
        # ray.init makes SIGTERM exit this process at once, which aborts Ray's threads;
        # from here on a SIGTERM, even one during the deployment, removes the app first
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        info = deploy(settings, registry_settings, connection=connection, replicas=replicas)
        where = "a local Ray" if info.connection.local else f"the Ray cluster at {info.address}"
        on_ready(
            f"serving on Ray Serve at {info.url}: {info.replicas} replica(s)"
            + (f", {info.gpus_per_replica} GPU each" if info.gpus_per_replica else " on CPUs")
            + f", on {where}",
            flush=True,
        )
        if detach:
            return
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            undeploy(info)
    finally:
        if previous is not None:  # None: a handler not set from Python, left as it is
            signal.signal(signal.SIGTERM, previous)
        restore_env(env)
