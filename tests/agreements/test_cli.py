"""`nvf agreements ...` as a user runs it: real processes against the test's Redis and database,
with the workers running."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

from marketplace.settings import Settings
from tests.integration.harness import marketplace

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(str(resources.files("marketplace.agreements").joinpath("samples/agreements-25.csv")))


@dataclass
class Run:
    code: int
    out: str
    err: str


def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "NVF_DB_SCHEMA")}
    env.update(REDIS_URL=settings.redis_url or "", DATABASE_URL=settings.effective_database_url,
               NVF_STREAM_PREFIX=settings.stream_prefix, NVF_STATE_DIR=str(tmp_path / "cli-state"),
               NVF_LOG_FORMAT="json")
    if settings.db_schema:
        env["NVF_DB_SCHEMA"] = settings.db_schema
    return env


async def nvf(env: dict[str, str], *args: str) -> Run:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketplace.entrypoints.cli", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    return Run(proc.returncode or 0, out.decode(), err.decode())


async def test_import_search_and_the_owners_commands_from_the_command_line(settings, database, redis_client,
                                                                            tmp_path):
    env = cli_env(settings, tmp_path)
    bad = tmp_path / "bad.csv"
    lines = SAMPLE.read_text(encoding="utf-8-sig").splitlines()
    bad.write_text("\n".join([*lines[:2], lines[2].replace("SE2321000164-KAT31", "SE2321000164-KAT 31")]) + "\n",
                   encoding="utf-8")
    async with marketplace(settings, database):
        first = await nvf(env, "agreements", "import", str(SAMPLE), "--as", "25")
        second = await nvf(env, "agreements", "import", str(SAMPLE), "--as", "25")
        with_bad_row = await nvf(env, "agreements", "import", str(bad), "--as", "25")
        search = await nvf(env, "agreements", "search", "grå starr", "--region", "25", "--has-agreement",
                           "--as-of", "2026-06-01")
        misspelt = await nvf(env, "agreements", "search", "gråstar", "--region", "24", "--as-of", "2026-06-01")
        unknown_region = await nvf(env, "agreements", "search", "katarakt", "--region", "99")
        by_provider = await nvf(env, "agreements", "end", "NLL-2026-001", "--as", "01", "--on", "2026-06-01")
        drafted = await nvf(env, "agreements", "create", "--as", "24", "--id", "VLL-1", "--provider", "01",
                            "--unit-hsa-id", "SE2321000016-KAT01", "--unit-name", "Ögonkliniken Stockholm (KAT01)",
                            "--care-area", "cataract", "--valid-from", "2026-01-01", "--price-sek", "9900",
                            "--region-contact", "Vårdförmedlingen Västerbotten")
        preview = await nvf(env, "agreements", "preview", "VLL-1", "--as-of", "2026-06-01")
        registered = await nvf(env, "agreements", "register", "VLL-1", "--as", "24")
        ended = await nvf(env, "agreements", "end", "NLL-2026-002", "--as", "25", "--on", "2026-05-01")
        show = await nvf(env, "agreements", "show", "NLL-2026-002")
        after = await nvf(env, "agreements", "search", "katarakt", "--region", "25", "--has-agreement",
                          "--as-of", "2026-06-01")

    assert first.code == 0, first.out + first.err
    assert "5 imported or updated, 0 unchanged, 0 bad" in first.out
    assert second.code == 0 and "0 imported or updated, 5 unchanged, 0 bad" in second.out
    assert with_bad_row.code == 1
    assert "bad row" in with_bad_row.out and "column hsa_id" in with_bad_row.out and "│ 3 " in with_bad_row.out
    assert "1 unchanged, 1 bad" in with_bad_row.out  # line 2 still went (and was already there)

    assert search.code == 0, search.err
    # One row per unit 25 has an agreement with, with its contact details; ranked as shown.
    assert "3 performing unit(s)" in search.out
    for shown in ("Kataraktoperation", "Ögonkliniken Stockholm", "SE2321000016-KAT01", "Dagkirurgen Halmstad",
                  "Vårdförmedlingen", "agreement with 25", "9 800"):
        assert shown in search.out, shown
    assert "Kirurgkliniken" not in search.out  # hernia only: not found by "grå starr"
    assert "Traceback" not in search.err
    assert misspelt.code == 0 and 'nearest word "gråstarr"' in misspelt.out and "agreement with 24" in misspelt.out

    assert unknown_region.code == 2
    assert unknown_region.err.strip().splitlines() == ["region: unknown region code '99'"]
    assert by_provider.code == 1 and "belongs to region 25" in by_provider.out

    assert drafted.code == 0, drafted.out + drafted.err
    assert "draft VLL-1 saved" in drafted.out
    assert "preview of agreement VLL-1" in preview.out and "(draft, version 1)" in preview.out
    assert '"grå starr"' in preview.out and "a draft: navigators will see it once it is registered" in preview.out
    assert registered.code == 0 and "agreement VLL-1 registered" in registered.out

    assert ended.code == 0 and "ends on 2026-05-01" in ended.out
    assert "agreement.ended" in show.out and "ended on 2026-05-01" in show.out
    assert "2 performing unit(s)" in after.out and "Örebro" not in after.out
