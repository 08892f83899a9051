"""One way into Ray: join the cluster at an address, or start a fresh local Ray.

    with ray_session(address) as connection:   # address None: a local Ray for the block
        ...                                    # Ray calls; connection.local says which

`ray.init` exports RAY_* variables (and PYTHONBREAKPOINT) into this process; a session puts
the environment back as it found it, so a later session, or a test's leak check, sees none.
Ray is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

_TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"


class ClusterUnreachable(ConnectionError):
    """The Ray cluster at an address could not be joined; the message names it and the fix."""


@dataclass(frozen=True)
class Connection:
    """What a `connect` call did in this process."""

    initialised: bool
    """This call initialised Ray here (so its caller shuts it down); False when Ray was
    already initialised, e.g. by an outer session."""
    local: bool
    """...by starting a fresh local Ray, which `ray.shutdown()` stops (an existing cluster
    is only disconnected from)."""


def connect(address: str | None = None) -> Connection:
    """Join the cluster at `address` (host:port of its head), or start a fresh local Ray when
    `address` is None. Never picks up a Ray found running on the machine by itself."""
    import ray

    if ray.is_initialized():
        return Connection(initialised=False, local=False)
    if address:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterUnreachable(
                f"cannot connect to the Ray cluster at {address}: {exc}. Fix: check the "
                "address (ray status --address ADDR) and that RAY_AUTH_MODE matches the cluster"
            ) from exc
        return Connection(initialised=True, local=False)
    # A local Ray turns token authentication on by itself (good) and warns that it did on
    # every start (noise in every run's output): keep the auth, drop the notice.
    logging.getLogger(_TOKEN_NOTICE_LOGGER).setLevel(logging.ERROR)
    ray.init(
        address="local",  # always a fresh local Ray, never one found on the machine
        num_cpus=os.cpu_count() or 1,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    return Connection(initialised=True, local=True)


def restore_env(snapshot: dict[str, str]) -> None:
    """Put `os.environ` back to `snapshot`, undoing the variables Ray exported since."""
    for key in set(os.environ) - set(snapshot):
        del os.environ[key]
    os.environ.update(snapshot)


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[Connection]:
    """Ray connected for the block: the cluster at `address`, or a local Ray started for it.

    On leaving, what this session initialised is shut down (a local Ray stops; from a
    cluster we only disconnect) and the environment restored. Inside an outer session the
    block shares that connection and leaves it as it was, so a run's searches and its
    tuning pool share one Ray.
    """
    env = dict(os.environ)  # before importing Ray, which exports RAY_* variables
    try:
        connection = connect(address)
    except BaseException:
        restore_env(env)
        raise
    try:
        yield connection
    finally:
        if connection.initialised:
            import ray

            ray.shutdown()
            restore_env(env)
