"""The committed AsyncAPI document is the one FastStream generates from the app now."""

from __future__ import annotations

import json
from pathlib import Path

from marketplace.entrypoints.asyncapi import document

COMMITTED = Path(__file__).resolve().parents[1] / "events" / "asyncapi.json"


def test_committed_asyncapi_document_is_up_to_date():
    fresh = document()
    assert COMMITTED.read_text(encoding="utf-8") == fresh, (
        "events/asyncapi.json is out of date: regenerate it with `nvf asyncapi`")


def test_asyncapi_documents_every_stream_and_its_payloads():
    spec = json.loads(COMMITTED.read_text(encoding="utf-8"))
    channels = " ".join(spec["channels"])
    for stream in ("ingress:{party}", "book:{care_area}", "matches", "cases", "messages", "rejections", "to:{party}",
                   "sdk:submitted:{region}", "sdk:receipts:{region}"):
        assert f"nvf:{stream}" in channels
    schemas = json.dumps(spec["components"]["schemas"])
    for payload in ("OfferPublished", "RequestPublished", "MatchProposed", "EventRejected", "CaseCommandIssued"):
        assert payload in schemas
