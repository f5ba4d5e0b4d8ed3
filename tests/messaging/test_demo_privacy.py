"""The whole demo, then a search of everything it left behind for the patients' identities.

The parties carry a sample of the placed cases through referral, care and payment with synthetic
identities (`synthetic_identity`); afterwards every entry of every stream under the test's prefix,
every row of every table (every column) and every log line must be free of them. The only place
they may be is inside the encrypted bodies, and the test checks they are there: the unit opens
each referral with its own key store and finds its patient.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Any

import pytest
import structlog
from rich.console import Console
from sqlalchemy import select as sa_select
from sqlmodel import SQLModel, select

from demo_regions.campaign import spring_cataract_campaign
from demo_regions.identity import CLINICAL_SUMMARY, synthetic_identity
from marketplace.adapters.message_orm import SecureMessageRow
from marketplace.entrypoints.demo import run_demo
from marketplace.entrypoints.timeline_view import show_timeline
from marketplace.log_config import configure_logging
from marketplace.services.directory import key_directory
from notifiers.envelope import open_message
from notifiers.message_types import Referral
from notifiers.provisioning import load_directory, open_key_store

pytestmark = pytest.mark.integration


def identity_tokens(case_refs: list[str]) -> set[str]:
    """Every written form of every patient's identity, and the clinical text."""
    tokens = {CLINICAL_SUMMARY}
    for ref in case_refs:
        who = synthetic_identity(ref)
        pnr = who.personal_identity_number          # YYYYMMDD-NNNN
        digits = pnr.replace("-", "")
        tokens |= {pnr, pnr[2:], digits, digits[2:], who.family_name, f"{who.given_name} {who.family_name}"}
    return tokens


def leaks(text: str, tokens: set[str]) -> set[str]:
    return {t for t in tokens if t in text}


def _readable(value: Any) -> list[str]:
    """A stored value as text, and any base64 it carries decoded (a sealed message's readable
    header is inside it: it must be clean too)."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else (
        json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, dict | list) else str(value))
    out = [text]
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    payload = data.get("payload") if isinstance(data, dict) else None
    for field in ("sealed", "receipt"):
        if isinstance(payload, dict) and isinstance(payload.get(field), str):
            out += _jose_readable(base64.b64decode(payload[field]).decode("utf-8", "replace"))
    return out


def _jose_readable(token: str) -> list[str]:
    """A compact JWS and what anyone can read in it without a key: its header, its payload, and
    if that is a JWE (a sealed message), the JWE's header, which carries the routing header."""
    out = [token]
    parts = token.split(".")
    if len(parts) != 3:
        return out
    header, payload = (base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)).decode("utf-8", "replace")
                       for p in parts[:2])
    out += [header, payload]
    inner = payload.split(".")
    if len(inner) == 5:
        out.append(base64.urlsafe_b64decode(inner[0] + "=" * (-len(inner[0]) % 4)).decode("utf-8", "replace"))
    return out


async def test_no_patient_identity_outside_encrypted_bodies_after_a_whole_demo(settings, database, redis_client,
                                                                                 caplog):
    scenario = spring_cataract_campaign()
    refs = [p.case_ref for r in scenario.requests for p in r.patients]
    tokens = identity_tokens(refs)
    assert leaks(f"xx {synthetic_identity(refs[0]).personal_identity_number} yy", tokens)  # the search works

    logs = io.StringIO()
    configure_logging("json", "DEBUG", stream=logs)
    caplog.set_level(logging.INFO)
    shown = io.StringIO()
    try:
        result = await run_demo(settings, settings.redis_url or "", scenario,
                                console=Console(file=shown, width=200))
    finally:
        structlog.reset_defaults()
    assert sum(1 for row in result.rows if row["offer_id"]) > 0

    found: dict[str, set[str]] = {}

    # 1. Every entry of every stream (and any other key) under the test's prefix.
    keys = [k async for k in redis_client.scan_iter(match=f"{settings.stream_prefix}:*", count=500)]
    entries = 0
    for key in keys:
        kind = (await redis_client.type(key)).decode()
        values: list[Any] = []
        if kind == "stream":
            for _, fields in await redis_client.xrange(key):
                entries += 1
                values += [v for pair in fields.items() for v in pair]
        elif kind == "string":
            values.append(await redis_client.get(key))
        for value in values:
            for text in _readable(value):
                if hit := leaks(text, tokens):
                    found.setdefault(f"redis {key!r}", set()).update(hit)
    assert entries > 1000

    # 2. Every column of every row of every table.
    rows_seen = 0
    async with database.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in (await conn.execute(sa_select(table))).all():
                rows_seen += 1
                for column, value in zip(table.columns, row, strict=True):
                    for text in _readable(value) + ([base64.b64decode(value).decode("utf-8", "replace")]
                                                    if table.name == "secure_messages" and column.name == "sealed"
                                                    else []):
                        if hit := leaks(text, tokens):
                            found.setdefault(f"table {table.name}.{column.name}", set()).update(hit)
    async with database.session() as session:
        referrals = (await session.exec(select(SecureMessageRow).where(SecureMessageRow.message_type == "referral")
                                        )).all()
    assert rows_seen > 1000

    # 3. Every log line (ours and the libraries') and what the demo printed.
    for source, text in (("structlog", logs.getvalue()), ("logging", caplog.text), ("console", shown.getvalue())):
        if hit := leaks(text, tokens):
            found[source] = hit
    assert logs.getvalue().count("\n") > 100

    assert found == {}

    # The identities did travel, inside the encrypted referrals, readable by the unit alone.
    assert len(referrals) >= 20
    keys_dir = key_directory(settings.state_dir)
    book = load_directory(keys_dir)
    for row in referrals:
        opened = open_message(base64.b64decode(row.sealed), open_key_store(keys_dir, row.recipient_org), book)
        assert isinstance(opened.body, Referral)
        assert opened.body.personal_identity_number == synthetic_identity(row.case_ref).personal_identity_number

    # And `nvf timeline` of a carried case shows its match, its referral and the referral's receipt.
    referral = referrals[0]
    out = io.StringIO()
    assert await show_timeline(settings, referral.case_ref, console=Console(file=out, width=250), check=True) == 0
    text = out.getvalue()
    assert "case.match_held" in text and "match.notice sent to" in text
    assert f"referral sent to {referral.recipient_org} ({referral.recipient_address})" in text
    assert f"receipt ACCEPTED for message {referral.message_id}" in text
    assert "case.referral_acknowledged" in text and "hash chain intact" in text
