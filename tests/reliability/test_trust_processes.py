"""Trust with real processes: `nvf access` provisions, `nvf run` applies the users and runs every role
as its own, and a region speaks with nothing but its own credential file."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import NoPermissionError
from sqlmodel import select

from events import OfferPublished, Streams, new_envelope
from events.parties import RULE_PRODUCER_IS_CHANNEL
from marketplace.access import user_name
from marketplace.adapters.orm import OfferRow, RejectionRow
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.adapters.redis_users import Credential, access_directory
from marketplace.parties import all_parties
from tests.reliability.checks import eventually
from tests.reliability.conftest import REPO, worker_env

pytestmark = pytest.mark.integration


def _offer(offer_id: str, region: str, producer: str) -> Any:
    from datetime import date

    return new_envelope(OfferPublished(offer_id=offer_id, region=region, unit_hsa_id="SE2321000016-KATA1",
                                       care_area="cataract", capacity=1, window_start=date(2026, 3, 9),
                                       window_end=date(2026, 4, 17), price_sek=9800), producer=producer)


def _nvf(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "marketplace.entrypoints.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=REPO)


async def test_nvf_access_provisions_owner_only_files_and_applies_the_users(settings: Any, redis_client: Any) -> None:
    env = worker_env(settings)
    init = _nvf(["access", "init"], env)
    assert init.returncode == 0, init.stderr
    directory = access_directory(settings.state_dir, settings.stream_prefix)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(directory.glob("*.json"))
    assert {f.stem for f in files} == set(all_parties())
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    password = json.loads((directory / "01.json").read_text())["password"]
    show = _nvf(["access", "show", "--party", "01"], env)
    assert show.returncode == 0, show.stderr
    assert f"{settings.stream_prefix}:ingress:01" in show.stdout and password not in show.stdout
    bad = _nvf(["access", "show", "--party", "99"], env)
    assert bad.returncode == 2 and "unknown party '99'" in bad.stderr and "Traceback" not in bad.stderr
    applied = _nvf(["access", "apply"], env)
    assert applied.returncode == 0, applied.stderr
    assert await redis_client.execute_command("ACL", "GETUSER", user_name(settings.stream_prefix, "01"))
    check = _nvf(["access", "check"], env)
    assert check.returncode == 0, check.stdout + check.stderr
    revoked = _nvf(["access", "revoke"], env)
    assert revoked.returncode == 0 and f"deleted {len(all_parties())} users" in revoked.stdout
    assert await redis_client.execute_command("ACL", "GETUSER", user_name(settings.stream_prefix, "01")) is None


async def test_nvf_run_connects_each_role_as_itself_and_a_region_has_only_its_own_lane(
        settings: Any, database: Any, redis_client: Any, workers: Any) -> None:
    env = worker_env(settings, NVF_ACCESS="apply")
    workers.start("w1", ["intake", "matcher", "notifier", "timeline"], env)
    streams = Streams(settings.stream_prefix)
    role_users = {user_name(settings.stream_prefix, r) for r in ("intake", "matcher", "notifier", "timeline",
                                                                 "scheduler")}

    async def connected() -> bool:
        users = {c["user"] for c in await redis_client.client_list()}
        return role_users <= users

    await eventually(connected, 60, "every role (and the sweeper) connected as its own user")
    # Region 01's system has its own credential file and nothing else.
    data = json.loads((access_directory(settings.state_dir, settings.stream_prefix) / "01.json").read_text())
    region = aioredis.from_url(Credential("01", data["user"], data["password"]).url(settings.redis_url or ""))
    try:
        forged, good = _offer("off-frgd", "03", "03"), _offer("off-gd", "01", "01")
        for envelope in (forged, good):
            await region.xadd(streams.ingress("01"), {DATA_FIELD: envelope.to_json()})
        with pytest.raises(NoPermissionError):
            await region.xadd(streams.ingress("03"), {DATA_FIELD: forged.to_json()})
        with pytest.raises(NoPermissionError):
            await region.xrange(streams.outgoing("03"))

        async def refused() -> bool:
            async with database.session() as session:
                offers = set((await session.exec(select(OfferRow.offer_id))).all())
                rows = (await session.exec(select(RejectionRow).where(
                    RejectionRow.event_id == str(forged.event_id)))).all()
            return offers == {"off-gd"} and [r.rule for r in rows] == [RULE_PRODUCER_IS_CHANNEL]

        await eventually(refused, 60, "the forged offer refused and the good one stored")

        async def told() -> bool:
            return len(await region.xrange(streams.outgoing("01")) or []) == 1

        await eventually(told, 30, "region 01 told on its own stream")
    finally:
        await region.aclose()
