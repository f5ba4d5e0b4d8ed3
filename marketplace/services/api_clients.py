"""The region API's clients (OAuth2 client credentials): made, listed, revoked, authenticated.

A client belongs to one organisation (a region, by code, organisation number and HSA-id) or is the
operator. Its secret is shown once when it is made; only a salted scrypt hash is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from marketplace.adapters.api_orm import ApiClientRow
from marketplace.adapters.orm import utcnow
from matchers.reference import regions

ROLES = ("region", "operator")
HSA_ID = re.compile(r"^SE\d{10}-[A-Za-z0-9]{1,31}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def check_organisation(role: str, region: str | None, org_number: str | None, hsa_id: str | None) -> None:
    """Raises ValueError naming the field if the organisation does not hold together."""
    if role not in ROLES:
        raise ValueError(f"role: must be one of {', '.join(ROLES)}, not {role!r}")
    if hsa_id is not None and not HSA_ID.match(hsa_id):
        raise ValueError(f"hsa_id: {hsa_id!r} is not an HSA-id (SE + 10 digits + '-' + up to 31 letters/digits)")
    if role == "operator":
        return
    known = regions()
    if region not in known:
        raise ValueError(f"region_code: {region!r} is not a known region code")
    expected = known[region].org_number
    if org_number != expected:
        raise ValueError(f"org_number: region {region} is organisation {expected}, not {org_number!r}")
    if hsa_id is not None and hsa_id[2:12] != expected.replace("-", ""):
        raise ValueError(f"hsa_id: {hsa_id!r} is not under organisation {expected}")


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def secret_matches(secret: str, stored: str) -> bool:
    try:
        scheme, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), **_SCRYPT)
    return hmac.compare_digest(candidate, base64.b64decode(digest))


async def create(session: AsyncSession, *, name: str, role: str, region: str | None = None,
                 hsa_id: str | None = None) -> tuple[ApiClientRow, str]:
    """A new client and its secret (shown once). Raises ValueError naming the field on bad input."""
    if not name or len(name) > 200:
        raise ValueError("name: 1 to 200 characters")
    org = regions()[region].org_number if role == "region" and region in regions() else None
    check_organisation(role, region, org, hsa_id)
    secret = secrets.token_urlsafe(32)
    row = ApiClientRow(client_id="nvf-" + secrets.token_hex(8), secret_hash=hash_secret(secret), name=name,
                       role=role, region=region if role == "region" else None, org_number=org, hsa_id=hsa_id)
    session.add(row)
    await session.commit()
    return row, secret


async def authenticate(session: AsyncSession, client_id: str, secret: str) -> ApiClientRow | None:
    """The client, if the secret is its own and it is not revoked."""
    row = await session.get(ApiClientRow, client_id[:64])
    if row is None:
        # Spend the same work on an unknown client as on a wrong secret.
        secret_matches(secret, hash_secret("unknown"))
        return None
    if not secret_matches(secret, row.secret_hash) or row.revoked_at is not None:
        return None
    return row


async def is_active(session: AsyncSession, client_id: str) -> bool:
    row = await session.get(ApiClientRow, client_id[:64])
    return row is not None and row.revoked_at is None


async def listing(session: AsyncSession) -> Sequence[ApiClientRow]:
    return (await session.exec(select(ApiClientRow).order_by(col(ApiClientRow.created_at)))).all()


async def revoke(session: AsyncSession, client_id: str) -> bool:
    """Revoke; tokens it holds stop working at once. False if there is no such client."""
    row = await session.get(ApiClientRow, client_id)
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        await session.commit()
    return True
