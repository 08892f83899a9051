"""`mpt user add|list|revoke|rotate`, and who the CLI acts as.

With authentication on (any user exists, or MPT_AUTH=required) every command that acts
(register, request, approve, reject, rollback, protect) acts as the user of `MPT_TOKEN`;
`--user` / `MPT_USER` may only repeat that name. User administration is an admin's job:
with `MPT_TOKEN` set it must be an admin's token; without one it runs as the database
operator (whoever holds the registry's database credentials, audited as
`operator:<login>`), which is how the first users are made.
"""

from __future__ import annotations

import argparse
import os
import socket
from typing import TYPE_CHECKING

from registry import ROLES, PermissionDenied  # light: no SQLAlchemy at start-up

from .output import emit

if TYPE_CHECKING:
    from registry import PromptRegistry, UserInfo

TOKEN_ENV = "MPT_TOKEN"


def cli_address() -> str:
    """Where a CLI action comes from, for the audit log."""
    return f"cli:{socket.gethostname()}"


def token_user(reg: PromptRegistry) -> UserInfo | None:
    """The user of MPT_TOKEN; None if it is unset; an error if it is set but refused."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        return None
    user = reg.authenticate(token)
    if user is None:
        raise PermissionDenied(
            f"{TOKEN_ENV} is not a valid token (mistyped, rotated or revoked); "
            "ask an admin for a new one (`mpt user rotate NAME`)"
        )
    return user


def acting_user(args: argparse.Namespace, reg: PromptRegistry) -> str:
    """The name the command acts as: the token's user when authentication is on, else
    --user, MPT_USER or the login name."""
    claimed = [
        (where, name)
        for where, name in (
            ("--user", getattr(args, "user", None)),
            ("MPT_USER", os.environ.get("MPT_USER")),
        )
        if name
    ]
    if not reg.auth_enabled():
        from registry.api import current_user

        return claimed[0][1] if claimed else current_user()
    user = token_user(reg)
    if user is None:
        raise PermissionDenied(
            f"authentication is on (users exist or MPT_AUTH=required): set {TOKEN_ENV} to "
            "your token to act; `mpt user add NAME --role ROLE` prints one"
        )
    for where, name in claimed:
        if name != user.name:
            raise PermissionDenied(
                f"{where} {name}: {TOKEN_ENV} is {user.name}'s token, and with authentication "
                f"on you act as the token's user; drop {where} or use {name}'s own token"
            )
    return user.name


def _admin(reg: PromptRegistry) -> str | None:
    user = token_user(reg)
    return None if user is None else user.name


def _row(u: UserInfo) -> dict[str, str]:
    state = "service" if u.service else ("active" if u.active else "revoked")
    return {
        "name": u.name,
        "role": u.role,
        "state": state,
        "created": f"{u.created_at:%Y-%m-%d %H:%M}",
        "by": u.created_by,
        "last_login": f"{u.last_login_at:%Y-%m-%d %H:%M}" if u.last_login_at else "-",
    }


def _print_token(args: argparse.Namespace, verb: str, user: UserInfo, token: str) -> None:
    if args.json:
        emit(args, {"name": user.name, "role": user.role, "token": token})
        return
    print(f"{verb} {user.name} ({user.role})")
    print(f"token: {token}")
    print(
        "Shown once; only its hash is stored. Log in to the review pages with it, or "
        f"`export {TOKEN_ENV}=...` for the CLI."
    )


def cmd_add(args: argparse.Namespace) -> None:
    from registry import open_registry

    reg = open_registry()
    actor = _admin(reg)
    existing = {u.name: u for u in reg.list_users()}.get(args.name)
    if existing is not None and args.if_exists == "rotate" and existing.active:
        user, token = reg.rotate_token(args.name, actor=actor, address=cli_address())
        _print_token(args, "new token for existing user", user, token)
        return
    user, token = reg.add_user(args.name, args.role, actor=actor, address=cli_address())
    _print_token(args, "added user", user, token)


def cmd_list(args: argparse.Namespace) -> None:
    from registry import open_registry

    users = open_registry().list_users()
    emit(args, [u.to_dict() for u in users] if args.json else [_row(u) for u in users])


def cmd_revoke(args: argparse.Namespace) -> None:
    from registry import open_registry

    reg = open_registry()
    user = reg.revoke_user(args.name, actor=_admin(reg), address=cli_address())
    print(f"revoked {user.name}: their token and sessions no longer work")


def cmd_rotate(args: argparse.Namespace) -> None:
    from registry import open_registry

    reg = open_registry()
    user, token = reg.rotate_token(args.name, actor=_admin(reg), address=cli_address())
    _print_token(args, "new token for", user, token)


def cmd_audit(args: argparse.Namespace) -> None:
    from registry import open_registry

    entries = open_registry().audit_log(domain=args.domain, actor=args.actor, limit=args.limit)
    if args.json:
        emit(args, [e.to_dict() for e in entries])
        return
    rows = [
        {
            "at": f"{e.at:%Y-%m-%d %H:%M:%S}Z",
            "actor": e.actor,
            "action": e.action,
            "outcome": e.outcome,
            "address": e.address or "-",
            "what": " ".join(
                part
                for part in (
                    e.domain or "",
                    f"v{e.version}" if e.version else "",
                    f"#{e.request_id}" if e.request_id else "",
                    e.alias or "",
                    str(e.detail.get("user", "")),
                )
                if part
            ),
            "error": str(e.detail.get("error", ""))[:90],
        }
        for e in entries
    ]
    emit(args, rows)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "user", help="users, roles and tokens (review pages, MPT_TOKEN)"
    ).add_subparsers(dest="user_command", required=True)
    p = group.add_parser("add", help="add a user; prints their token once", parents=[common])
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument(
        "--if-exists",
        choices=["fail", "rotate"],
        default="fail",
        help="an existing active user: fail (default) or give them a new token",
    )
    p.set_defaults(func=cmd_add)
    p = group.add_parser("list", help="users, roles, state (never tokens)", parents=[common])
    p.set_defaults(func=cmd_list)
    p = group.add_parser(
        "revoke", help="deactivate a user and end their sessions", parents=[common]
    )
    p.add_argument("name")
    p.set_defaults(func=cmd_revoke)
    p = group.add_parser("rotate", help="a new token; the old one stops working", parents=[common])
    p.add_argument("name")
    p.set_defaults(func=cmd_rotate)
    p = sub.add_parser(
        "audit",
        help="the audit log: who did (or was refused) what, when, from where",
        parents=[common],
    )
    p.add_argument("--domain")
    p.add_argument("--actor")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=cmd_audit)
