"""Each region's feed of its own cases (`to:<R>:cases`), staged beside the `cases` stream.

A region's system learns what happened to its cases from here, as an outside system would, never
from the marketplace's tables: the home region hears every event of the cases it refers out, the
providing region every event while its match stands (from the hold to the settlement, and the
event that ends it). An entry is the case event of the `cases` stream (ids, codes, amounts and
dates, never a patient's identity) with what a region's system needs to act on it next: the case's
regions and care area, its guarantee date, its match, and what is left to pay.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from events import CaseStateChanged, Envelope, Streams, new_envelope
from events.envelope import stable_event_id
from marketplace.adapters.outbox import stage
from marketplace.lifecycle import CaseState
from marketplace.lifecycle.states import HAS_MATCH


def feed_regions(before: CaseState | None, after: CaseState) -> list[str]:
    """The regions told of an event that took a case from `before` to `after`."""
    told = [after.home_region]
    for state in (before, after):
        if state is not None and state.match is not None and state.status in HAS_MATCH:
            told.append(state.match.providing_region)
    return list(dict.fromkeys(told))


def feed_entry(mirrored: CaseStateChanged, after: CaseState) -> CaseStateChanged:
    """`mirrored` (the `cases` stream's entry) with the case's standing a region's system acts on."""
    standing: dict[str, str | int | float | bool | None] = {
        "home_region": after.home_region, "care_area": after.care_area,
        "guarantee_date": after.guarantee_date.isoformat(),
        "outstanding_sek": str(after.outstanding_sek),
    }
    if after.match is not None:
        standing |= {"match_id": after.match.match_id, "providing_region": after.match.providing_region,
                     "unit_hsa_id": after.match.unit_hsa_id, "price_sek": str(after.match.price_sek)}
    if after.matched_at is not None:
        standing["matched_at"] = after.matched_at.isoformat()
    if after.hold_expires_at is not None:
        standing["hold_expires_at"] = after.hold_expires_at.isoformat()
    if after.performed_on is not None:
        standing["performed_on"] = after.performed_on.isoformat()
    if after.settlement is not None:
        standing["invoice_total_sek"] = str(after.settlement.invoice_total_sek)
    return mirrored.model_copy(update={"details": {**mirrored.details, **standing}})


def stage_feeds(session: AsyncSession, streams: Streams, envelope: Envelope, mirrored: CaseStateChanged,
                before: CaseState | None, after: CaseState) -> None:
    """`envelope` (staged for `cases`) also on the feed of every region it concerns."""
    entry = feed_entry(mirrored, after)
    for region in feed_regions(before, after):
        # An id of its own per feed (the outbox keeps one row per event id).
        stage(session, new_envelope(entry, producer=envelope.producer, correlation_id=envelope.correlation_id,
                                    event_id=stable_event_id("case-feed", envelope.event_id, region),
                                    occurred_at=envelope.occurred_at),
              streams.case_feed(region))
