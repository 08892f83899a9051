"""`mpt serve`: the app in this process, under uvicorn (default 127.0.0.1:8000)."""

from __future__ import annotations

import copy
import ipaddress
import logging
import logging.config
import socket

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from registry import PromptRegistry

from .app import create_app
from .auth import auth_required
from .errors import ServingError
from .settings import ServeSettings

log = logging.getLogger("serving")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def check_port(host: str, port: int) -> None:
    """Fail early, with the fix, when the address is taken (uvicorn would only log it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ServingError(
                f"cannot listen on {host}:{port}: {exc.strerror}. Fix: pass another --port "
                "(or MPT_SERVE_PORT), or stop what is using it"
            ) from None


def logging_config() -> dict:
    """uvicorn's log format, with the `serving` logger (loads, swaps, failures) on it."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["serving"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def warn_if_open(settings: ServeSettings, registry: PromptRegistry) -> None:
    if not is_loopback(settings.host) and not auth_required(registry):
        log.warning(
            "serving: listening on %s without authentication (the registry has no users): "
            "anyone who can reach this port can call the API",
            settings.host,
        )


def run(settings: ServeSettings, registry: PromptRegistry) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM stop it cleanly)."""
    check_port(settings.host, settings.port)
    logging.config.dictConfig(logging_config())
    warn_if_open(settings, registry)
    uvicorn.run(
        create_app(settings, registry=registry),
        host=settings.host,
        port=settings.port,
        log_config=logging_config(),
        timeout_graceful_shutdown=10,
    )
