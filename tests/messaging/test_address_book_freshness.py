"""A unit listed while a party's system runs is never refused as "no functional address".

The marketplace lists a unit's HSA-id in the shared address book when it first routes to it, and
saves the book before the message that needs the unit is handed over. Every other holder of a copy
of the book (a party's receiving agent, another notifier process) read its copy earlier; the race
was that copy being taken as complete. In the medium demo a unit's agent opened the referral with
the copy it had read at the start of its poll, refused it ("no functional address"), and the
demo then waited 60 s for a referral acknowledgement that could never come.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from demo_regions.identity import synthetic_identity
from demo_regions.outcome import PartyOutcome
from demo_regions.systems import Agents, Federation
from events import CaseStateChanged, SecureMessageDelivered, SecureReceiptSubmitted, Streams, new_envelope
from events.envelope import parse_envelope
from marketplace.adapters.outbox import DATA_FIELD
from marketplace.adapters.party_clients import PartyClients
from marketplace.services.directory import Federation as MarketplaceFederation
from marketplace.services.directory import key_directory, with_unit
from notifiers.envelope import compose
from notifiers.message_types import build_referral
from notifiers.provisioning import load_directory
from notifiers.receipts import ReceiptStatus, verify_receipt

from .conftest import CASE, HOME_ORG, MATCH, PROVIDER, PROVIDER_ORG

NEW_UNIT = "SE2321000016-NYENH"  # a unit of region 01 no message has gone to yet


def _referral_to_new_unit(marketplace: MarketplaceFederation, parties: Federation) -> bytes:
    who = synthetic_identity(CASE)
    body = build_referral(CaseStateChanged(case_ref=CASE, from_state=None, to_state="patient_accepted", version=7),
                          match_id=MATCH, care_area="cataract", personal_identity_number=who.personal_identity_number,
                          given_name=who.given_name, family_name=who.family_name, clinical_summary="Syntetisk.")
    recipient = with_unit(marketplace.book, NEW_UNIT).get(PROVIDER_ORG)
    assert recipient is not None
    sealed = compose(body, sender=parties.stores[HOME_ORG], recipient=recipient, recipient_address=NEW_UNIT,
                     conversation_id=CASE, label="Remiss")
    return sealed.to_bytes()


class RoutedMidPoll:
    """A region's Redis client whose inbox read is overtaken by the notifier: just before the read
    returns, the notifier lists a new unit and hands a referral for it to the inbox (the
    interleaving of the race: the agent's copy of the book was read before the listing)."""

    def __init__(self, client: Any, inbox: str, route: Callable[[], Awaitable[None]]) -> None:
        self._client, self._inbox, self._route = client, inbox, route

    async def xrange(self, stream: str, *args: Any, **kwargs: Any) -> Any:
        if stream == self._inbox and self._route is not None:
            route, self._route = self._route, None  # type: ignore[assignment]
            await route()
        return await self._client.xrange(stream, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.mark.integration
async def test_a_unit_listed_after_the_agent_read_its_book_gets_its_referral(settings, database,
                                                                            redis_client) -> None:
    streams = Streams(settings.stream_prefix)
    keys = key_directory(settings.state_dir)
    marketplace = MarketplaceFederation(keys)
    _ = marketplace.book  # the federation's keys, as the notifier makes them on first use
    async with PartyClients(settings.redis_url or "", None) as clients:
        parties = Federation(clients, streams, keys, "0-0")
        assert parties.book.by_address(NEW_UNIT) is None  # the agents' copy, read now
        agents = Agents(parties, PartyOutcome())

        async def route() -> None:
            # The notifier routes the referral: it lists the unit (saving the book), then hands over.
            marketplace.unit(NEW_UNIT, PROVIDER)
            sealed = _referral_to_new_unit(marketplace, parties)
            delivered = new_envelope(SecureMessageDelivered(message_id="m", case_ref=CASE,
                                                            sealed=base64.b64encode(sealed).decode()),
                                     producer="notifier")
            await redis_client.xadd(streams.inbox(PROVIDER_ORG), {DATA_FIELD: delivered.to_json()})

        real = clients.client(PROVIDER)
        clients._clients[""] = RoutedMidPoll(real, streams.inbox(PROVIDER_ORG), route)
        await agents.poll()
        clients._clients[""] = real

        entries = await redis_client.xrange(streams.secure_receipts(PROVIDER))
        answers = await redis_client.xrange(streams.secure_submissions(PROVIDER))
    (receipt_entry,) = [parse_envelope(fields[DATA_FIELD.encode()])[1] for _, fields in entries]
    assert isinstance(receipt_entry, SecureReceiptSubmitted)
    receipt = verify_receipt(base64.b64decode(receipt_entry.receipt), load_directory(keys))
    assert receipt.status is ReceiptStatus.ACCEPTED, receipt.reason
    assert agents.outcome.referrals_opened == 1
    # And the unit answers the referral it could read.
    assert [parse_envelope(f[DATA_FIELD.encode()])[0].type for _, f in answers] == ["sdk.message.submitted"]


def test_another_notifier_finds_a_unit_listed_since_it_read_the_book(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first, second = MarketplaceFederation(keys), MarketplaceFederation(keys)
    _ = first.book, second.book  # both processes have their copy
    first.unit(NEW_UNIT, PROVIDER)  # one of them lists the unit

    entry = second.entry_with_address(PROVIDER_ORG, NEW_UNIT)
    assert entry is not None and entry.org_number == PROVIDER_ORG
    assert second.entry_with_address(PROVIDER_ORG, "SE2321000016-OKAND") is None
    assert second.entry_with_address(HOME_ORG, NEW_UNIT) is None  # listed for its own organisation only
