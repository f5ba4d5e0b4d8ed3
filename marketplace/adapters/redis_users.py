"""The parties' Redis users: passwords kept in the state directory, ACL rules applied to a server.

`<state dir>/access/<prefix>/<party>.json` holds one party's user name and password (mode 0600, in
a 0700 directory): a region is handed its own file and nothing else. The server keeps only the
SHA-256 of each password (`#<hex>`), so the rules can be printed and logged.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import structlog

from events import Streams
from marketplace.access import acl_rules, grant, supports_selectors, user_name
from marketplace.parties import all_parties
from marketplace.settings import Settings

log = structlog.get_logger(__name__)


class AccessError(RuntimeError):
    """Credentials missing or unreadable, or a server that refuses the rules."""


@dataclass(frozen=True)
class Credential:
    party: str
    user: str
    password: str

    def url(self, base_url: str) -> str:
        """`base_url` (the server, e.g. REDIS_URL or the embedded socket) as this party's user."""
        parts = urlsplit(base_url)
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def access_directory(state_dir: Path, prefix: str) -> Path:
    return state_dir / "access" / prefix


def _path(state_dir: Path, prefix: str, party: str) -> Path:
    return access_directory(state_dir, prefix) / f"{party}.json"


def provision(state_dir: Path, prefix: str, parties: Iterable[str], *,
              rotate: Iterable[str] = ()) -> dict[str, Credential]:
    """Each party's credential, made (random password, file 0600) where missing or to be rotated."""
    directory = access_directory(state_dir, prefix)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    renew = set(rotate)
    out = {}
    # Processes starting at once (`nvf run` per role) take turns: each must find the passwords the
    # first one made, not make its own and apply them over the others'.
    with open(directory / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for party in parties:
                out[party] = _provision_one(state_dir, prefix, party, party in renew)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return out


def _provision_one(state_dir: Path, prefix: str, party: str, rotate: bool) -> Credential:
    path = _path(state_dir, prefix, party)
    if not rotate and path.exists():
        return load(state_dir, prefix, party)
    cred = Credential(party, user_name(prefix, party), secrets.token_urlsafe(32))
    # Created 0600 before anything is written to it; replaced whole (a rename).
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"party": party, "user": cred.user, "password": cred.password}, fh)
    os.replace(tmp, path)
    return cred


def load(state_dir: Path, prefix: str, party: str) -> Credential:
    path = _path(state_dir, prefix, party)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Credential(party, str(data["user"]), str(data["password"]))
    except FileNotFoundError:
        raise AccessError(f"no credentials for {party!r} in {path.parent} (run `nvf access init`)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AccessError(f"{path}: unreadable credentials ({type(exc).__name__})") from None


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


async def server_version(redis: Any) -> str:
    info = await redis.info("server")
    return str(info.get("redis_version", "0"))


def setuser_args(streams: Streams, cred: Credential, *, selectors: bool) -> list[str]:
    """ACL SETUSER's arguments for one party (the password as its hash)."""
    rules = acl_rules(grant(streams, cred.party), selectors=selectors)
    return [cred.user, "reset", "on", f"#{password_hash(cred.password)}", *rules]


async def apply(redis: Any, streams: Streams, credentials: Mapping[str, Credential]) -> str:
    """Create or replace every party's user on the server `redis` (an admin connection); returns
    the server version the rules were made for."""
    version = await server_version(redis)
    selectors = supports_selectors(version)
    for cred in credentials.values():
        try:
            await redis.execute_command("ACL", "SETUSER", *setuser_args(streams, cred, selectors=selectors))
        except Exception as exc:
            raise AccessError(f"the server refused the rules of {cred.user}: {exc}") from exc
    log.info("access.applied", prefix=streams.prefix, users=len(credentials), redis_version=version,
             key_permissions="read/write split, selectors" if selectors else "one key set per user (Redis 6.2)")
    return version


async def remove(redis: Any, prefix: str, parties: Iterable[str]) -> int:
    """Delete the users of `parties` under `prefix`; returns how many existed."""
    names = [user_name(prefix, party) for party in parties]
    return int(await redis.execute_command("ACL", "DELUSER", *names)) if names else 0


async def prepare_access(settings: Settings, admin_url: str) -> dict[str, Credential] | None:
    """The parties' credentials for a run, per `settings.access`: `apply` makes what is missing and
    (re)applies every user with `admin_url`'s rights; `existing` only reads them (an administrator
    ran `nvf access apply`); `off` is one connection for everything (None)."""
    if settings.access == "off":
        return None
    prefix = settings.stream_prefix
    if settings.access == "existing":
        return {party: load(settings.state_dir, prefix, party) for party in all_parties()}
    credentials = provision(settings.state_dir, prefix, all_parties())
    import redis.asyncio as aioredis

    admin = aioredis.from_url(admin_url)
    try:
        await apply(admin, Streams(prefix), credentials)
    finally:
        await admin.aclose()
    return credentials
