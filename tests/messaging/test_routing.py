"""The marketplace routes what it cannot read: checks on sealed submissions, the staged release of
the referral, receipts that acknowledge it. Handlers run on a real database, without a bus."""

from __future__ import annotations

import base64
import uuid

import pytest
from sqlmodel import select

from demo_regions.identity import synthetic_identity
from events import SecureMessageSubmitted, SecureReceiptSubmitted
from marketplace.adapters.message_orm import MessageReceiptRow, SecureMessageRow
from marketplace.adapters.orm import OutboxRow
from marketplace.lifecycle import CaseStatus, Withdraw, WithdrawalReason
from marketplace.services.lifecycle import apply_command, load_case
from marketplace.services.notification import receipts
from notifiers import crypto
from notifiers.envelope import open_message
from notifiers.message_types import MatchNotice, MatchReleased, Referral
from notifiers.receipts import (
    MessageRejected,
    ReceiptDetail,
    ReceiptStatus,
    new_receipt,
    sign_receipt,
    verify_receipt,
)
from tests.messaging.conftest import (
    CASE,
    HOME,
    HOME_ORG,
    MATCH,
    PROVIDER,
    PROVIDER_ORG,
    UNIT,
    entry,
    open_case,
    seal,
    sealed_b64,
    staged,
    store,
)
from tests.notifiers.conftest import with_routing

pytestmark = pytest.mark.integration

WHO = synthetic_identity(CASE)
REFERRAL = Referral(match_id=MATCH, case_ref=CASE, care_area="cataract",
                    personal_identity_number=WHO.personal_identity_number, given_name=WHO.given_name,
                    family_name=WHO.family_name, clinical_summary="Synthetic summary.")


async def _submit(notifier, session, ctx, sealed, producer=HOME, case_ref=CASE):
    raw = entry(SecureMessageSubmitted(case_ref=case_ref, sealed=sealed_b64(sealed)), producer)
    await notifier.on_submissions(session, [raw], ctx)


async def _referral_submitted(session, ctx, notifier, federation, *, until):
    """A case brought to `until`, then the home region's referral for it sealed and submitted."""
    await open_case(session, ctx, until=until)
    sealed = seal(federation, REFERRAL, HOME_ORG, PROVIDER_ORG, UNIT)
    await _submit(notifier, session, ctx, sealed)
    return sealed


def _refusal(notifier, payloads):
    """The receipts the marketplace put in an inbox, verified against the address book."""
    return [verify_receipt(base64.b64decode(p.receipt), notifier.federation.book) for p in payloads]


async def test_a_referral_before_the_patient_accepted_is_refused_and_goes_nowhere(
        database, ctx, marketplace_notifier, federation):
    async with database.session() as session:
        sealed = await _referral_submitted(session, ctx, marketplace_notifier, federation, until="provider_accepted")

        to_provider = await staged(session, ctx.streams.inbox(PROVIDER_ORG), ["sdk.message.delivered"])
        (refusal,) = _refusal(marketplace_notifier, await staged(session, ctx.streams.inbox(HOME_ORG),
                                                                 ["sdk.receipt.delivered"]))
        state = await load_case(session, CASE, ctx)
    assert [p.message_id for p in to_provider] == []
    assert refusal.status is ReceiptStatus.REJECTED
    assert (refusal.code, refusal.detail) == ("BV", "forbidden")
    assert "provider_accepted" in refusal.reason
    assert refusal.message_id == sealed.header.message_id
    assert state is not None and state.status is CaseStatus.PROVIDER_ACCEPTED


async def test_a_referral_after_both_accepted_is_routed_to_the_unit_and_acknowledged_by_its_receipt(
        database, ctx, marketplace_notifier, federation):
    async with database.session() as session:
        await open_case(session, ctx, until="patient_accepted")
        sealed = seal(federation, REFERRAL, HOME_ORG, PROVIDER_ORG, UNIT, label="Remiss")
        await _submit(marketplace_notifier, session, ctx, sealed)

        (delivered,) = await staged(session, ctx.streams.inbox(PROVIDER_ORG), ["sdk.message.delivered"])
        sent = await staged(session, ctx.streams.messages, ["message.sent"])
        state = await load_case(session, CASE, ctx)
        assert state is not None and state.status is CaseStatus.REFERRED
        assert state.referral_id == str(sealed.header.message_id)
        # Delivered as sealed, byte for byte: the marketplace neither read nor changed it.
        assert base64.b64decode(delivered.sealed) == sealed.to_bytes()
        assert [(s.message_type, s.recipient, s.recipient_address) for s in sent] == [
            ("referral", PROVIDER_ORG, UNIT)]

        # The unit's agent opens it with its own keys and answers ACCEPTED.
        provider_keys = store(federation, PROVIDER_ORG)
        receipt = sign_receipt(new_receipt(PROVIDER_ORG, message_id=sealed.header.message_id,
                                           recipient_org=HOME_ORG), provider_keys)
        raw_receipt = base64.b64encode(receipt.to_bytes()).decode()
        await receipts(marketplace_notifier).on_receipts(session, [entry(SecureReceiptSubmitted(receipt=raw_receipt),
                                                               PROVIDER)], ctx)
        state = await load_case(session, CASE, ctx)
        received = await staged(session, ctx.streams.messages, ["receipt.received"])
        forwarded = await staged(session, ctx.streams.inbox(HOME_ORG), ["sdk.receipt.delivered"])
        row = await session.get(SecureMessageRow, str(sealed.header.message_id))
    assert state is not None and state.status is CaseStatus.REFERRAL_ACKNOWLEDGED
    assert [(r.message_id, r.status, r.case_ref) for r in received] == [
        (str(sealed.header.message_id), "ACCEPTED", CASE)]
    assert [f.receipt for f in forwarded] == [raw_receipt]
    assert row is not None and (row.status, row.receipt_status) == ("accepted", "ACCEPTED")


async def test_the_same_message_submitted_again_is_refused_as_duplicate(database, ctx, marketplace_notifier,
                                                                      federation):
    async with database.session() as session:
        sealed = await _referral_submitted(session, ctx, marketplace_notifier, federation, until="patient_accepted")
        await _submit(marketplace_notifier, session, ctx, sealed)  # a new submission event, same message
        delivered = await staged(session, ctx.streams.inbox(PROVIDER_ORG), ["sdk.message.delivered"])
        refusals = _refusal(marketplace_notifier, await staged(session, ctx.streams.inbox(HOME_ORG),
                                                               ["sdk.receipt.delivered"]))
    assert len(delivered) == 1
    assert [(r.code, r.detail) for r in refusals] == [("BV", "duplicate")]


@pytest.mark.parametrize("case", ["tampered", "wrong_producer", "to_another_unit", "marketplace_type"])
async def test_what_the_marketplace_can_check_without_reading_is_checked(case, database, ctx, marketplace_notifier,
                                                                         federation):
    producer, expected = HOME, None
    async with database.session() as session:
        await open_case(session, ctx, until="patient_accepted")
        sealed = seal(federation, REFERRAL, HOME_ORG, PROVIDER_ORG, UNIT)
        if case == "tampered":
            # The routing header rewritten in transit, the sender's signature kept.
            header, _, signature = sealed.to_bytes().split(b".")
            changed = crypto.b64url(with_routing(sealed.to_bytes(), label="changed on the way").encode()).encode()
            sealed_bytes = b".".join((header, changed, signature))
            raw = entry(SecureMessageSubmitted(case_ref=CASE, sealed=base64.b64encode(sealed_bytes).decode()), HOME)
            await marketplace_notifier.on_submissions(session, [raw], ctx)
            expected = ("SIG", "security")
        else:
            if case == "wrong_producer":
                producer, expected = "03", ("BV", "forbidden")
            elif case == "to_another_unit":
                sealed = seal(federation, REFERRAL, HOME_ORG, PROVIDER_ORG, None)  # the region's own address
                expected = ("BV", "forbidden")
            else:
                sealed = seal(federation, MatchNotice(match_id=MATCH, case_ref=CASE, offer_id="o", request_id="r"),
                              HOME_ORG, PROVIDER_ORG, None)
                expected = ("BV", "forbidden")
            await _submit(marketplace_notifier, session, ctx, sealed, producer=producer)
        delivered = await staged(session, ctx.streams.inbox(PROVIDER_ORG), ["sdk.message.delivered"])
        submitter = federation.region(producer)
        assert submitter is not None
        refusals = _refusal(marketplace_notifier, await staged(session, ctx.streams.inbox(submitter.org_number),
                                                               ["sdk.receipt.delivered"]))
        state = await load_case(session, CASE, ctx)
    assert delivered == []
    assert [(r.code, r.detail) for r in refusals] == [expected]
    assert state is not None and state.status is CaseStatus.PATIENT_ACCEPTED


async def test_a_receipt_not_from_the_recipient_is_refused(database, ctx, marketplace_notifier, federation):
    async with database.session() as session:
        sealed = await _referral_submitted(session, ctx, marketplace_notifier, federation, until="patient_accepted")
        uppsala = "232100-0024"
        forged = sign_receipt(new_receipt(uppsala, message_id=sealed.header.message_id, recipient_org=HOME_ORG),
                              store(federation, uppsala))
        await receipts(marketplace_notifier).on_receipts(
            session, [entry(SecureReceiptSubmitted(receipt=base64.b64encode(forged.to_bytes()).decode()), "03")], ctx)
        rejected = await staged(session, ctx.streams.rejections, ["event.rejected"])
        state = await load_case(session, CASE, ctx)
    assert [(r.field, r.rule) for r in rejected] == [("payload.receipt", "known_message")]
    assert state is not None and state.status is CaseStatus.REFERRED


async def test_a_held_match_is_told_to_the_unit_and_the_home_region_once(database, ctx, marketplace_notifier,
                                                                        federation):
    async with database.session() as session:
        await open_case(session, ctx)
        rows = (await session.exec(select(OutboxRow).where(OutboxRow.stream == ctx.streams.cases))).all()
        held = [r.body for r in rows if '"case.match_held"' in r.body]
        assert len(held) == 1
        await marketplace_notifier.on_cases(session, held, ctx)
        await marketplace_notifier.on_cases(session, held, ctx)  # redelivered: no second notice
        to_unit = await staged(session, ctx.streams.inbox(PROVIDER_ORG), ["sdk.message.delivered"])
        to_home = await staged(session, ctx.streams.inbox(HOME_ORG), ["sdk.message.delivered"])
        sent = await staged(session, ctx.streams.messages, ["message.sent"])
    assert len(to_unit) == len(to_home) == 1
    assert sorted((s.message_type, s.recipient_address) for s in sent) == sorted(
        [("match.notice", UNIT), ("match.notice", federation.book.get(HOME_ORG).addresses[0])])
    # The unit opens its notice with its own keys: ids only.
    opened = open_message(base64.b64decode(to_unit[0].sealed), store(federation, PROVIDER_ORG), federation.book)
    assert opened.body == MatchNotice(match_id=MATCH, case_ref=CASE, offer_id="off-01", request_id="req-25")
    assert uuid.UUID(to_unit[0].message_id) == opened.header.message_id


async def test_a_released_hold_is_told_to_the_unit_with_its_cause(database, ctx, marketplace_notifier, federation):
    async with database.session() as session:
        await open_case(session, ctx, until="patient_accepted")
        await apply_command(session, Withdraw(CASE, reason=WithdrawalReason.FOUND_SLOT_IN_HOME_REGION), ctx,
                            correlation_id="corr-1", producer=HOME)
        rows = (await session.exec(select(OutboxRow).where(OutboxRow.stream == ctx.streams.cases))).all()
        await marketplace_notifier.on_cases(session, [r.body for r in rows], ctx)
        to_unit = await staged(session, ctx.streams.inbox(PROVIDER_ORG), ["sdk.message.delivered"])
    bodies = [open_message(base64.b64decode(d.sealed), store(federation, PROVIDER_ORG), federation.book).body
              for d in to_unit]
    assert [type(b).__name__ for b in bodies] == ["MatchNotice", "MatchReleased"]
    assert bodies[1] == MatchReleased(match_id=MATCH, case_ref=CASE, offer_id="off-01", cause="withdrawn")


async def test_the_first_receipt_settles_its_message_and_a_later_one_in_the_batch_is_history(
        database, ctx, marketplace_notifier, federation):
    async with database.session() as session:
        sealed = await _referral_submitted(session, ctx, marketplace_notifier, federation, until="patient_accepted")
        provider_keys = store(federation, PROVIDER_ORG)
        refused = MessageRejected(ReceiptDetail.DUPLICATE, "seen", message_id=sealed.header.message_id,
                                  sender_org=HOME_ORG)
        answers = [sign_receipt(new_receipt(PROVIDER_ORG, message_id=sealed.header.message_id, recipient_org=HOME_ORG,
                                            rejection=rejection), provider_keys) for rejection in (None, refused)]
        await receipts(marketplace_notifier).on_receipts(session, [
            entry(SecureReceiptSubmitted(receipt=base64.b64encode(a.to_bytes()).decode()), PROVIDER)
            for a in answers], ctx)
        row = (await session.exec(select(SecureMessageRow).where(
            SecureMessageRow.message_id == str(sealed.header.message_id)))).one()
        recorded = (await session.exec(select(MessageReceiptRow.status).where(
            MessageReceiptRow.message_id == str(sealed.header.message_id)))).all()
        received = await staged(session, ctx.streams.messages, ["receipt.received"])
    assert (row.status, row.receipt_status, row.receipt_code, row.receipt_detail) == (
        "accepted", "ACCEPTED", None, None)
    assert sorted(recorded) == ["ACCEPTED", "REJECTED"]
    assert sorted(r.status for r in received) == ["ACCEPTED", "REJECTED"]
