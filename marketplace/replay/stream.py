"""Streaming scenarios: a market as timed arrivals, the input of `nvf replay` (format version 1).

A stream is one JSON object (UTF-8):

```json
{
  "format": "nvf-replay-stream", "version": 1,
  "name": "cataract, 12 weeks", "seed": 7,
  "start": "2026-03-02", "end": "2026-07-31",
  "behaviour": {"provider_decline_rate": 0.04, "patient_decline_rate": 0.06, "no_show_rate": 0.03,
                "provider_answer_hours": [2, 40], "patient_answer_hours": [4, 100],
                "referral_ack_hours": 20, "care_lead_days": 7},
  "agreements": [{"purchaser": "23", "provider": "18", "care_area": "cataract"}],
  "events": [
    {"at": "2026-03-03T09:12:00+01:00", "type": "offer", "offer": {<an offer of the scenario contract>}},
    {"at": "2026-03-03T10:40:00+01:00", "type": "request",
     "request": {<a request of the scenario contract>, "patients": [
        {"case_ref": "case-1", "waiting_since": "2025-12-01", "breach_date": "2026-03-01"}]}},
    {"at": "2026-04-01T08:00:00+02:00", "type": "withdraw_offer", "offer_id": "off-1"},
    {"at": "2026-04-02T08:00:00+02:00", "type": "withdraw_case", "case_ref": "case-1"},
    {"at": "2026-03-03T12:00:00+01:00", "type": "clear", "care_area": "cataract",
     "as_of": "2026-03-03", "policy": "optimal"},
    {"at": "2026-03-04T09:00:00+01:00", "type": "answer", "case_ref": "case-1", "offer_id": "off-1",
     "party": "provider", "answer": "accept"}
  ]
}
```

- `start`/`end`: the first and last day (Swedish calendar days) the replay runs; every event
  falls in between. `seed` draws the parties' answers nobody recorded.
- `offer`, `request`: published at `at`, in exactly the scenario contract's shape
  (`contract/SCENARIOS.md`; validated by the same parser). A patient may carry `breach_date`, the
  day after which their home region predicts the care guarantee is broken (default: the
  guarantee date, `waiting_since` + 90 days). With `--publish-before-breach N` the replay
  publishes a request N days before its first patient's breach instead of at `at`, if earlier.
- `withdraw_offer`: the providing region takes back the capacity still free (holds stay).
  `withdraw_case`: the home region takes the patient back (found care itself), if the case
  still allows it.
- `clear`: a clearing round that was run (a recorded log); only the `recorded` policy uses them.
- `answer`: a party's recorded answer to the proposal of `offer_id` to `case_ref` (`accept`,
  `decline`, or `none`: no answer until the hold lapses). A proposal nobody recorded an answer to
  is answered by `behaviour`: the provider declines at `provider_decline_rate`, else accepts,
  after a delay drawn from `provider_answer_hours`; the patient does not answer (a no-show) at
  `no_show_rate`, declines at `patient_decline_rate`, else accepts, after `patient_answer_hours`.
  Each draw is a pure function of (seed, party, case, offer), so every policy meets the same
  parties. An accepted patient is referred at once, the referral acknowledged after
  `referral_ack_hours`, care booked `care_lead_days` later (within the offer's window) and
  performed on that day.

Bounds: rates 0..1 (no-show plus patient decline at most 1), hours 0..2 000, lead days 0..365,
at most 500 000 events and 53 weeks between start and end. A file that breaks a rule is refused
whole with every violation named (`StreamError`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from marketplace.lifecycle.swedish_time import SWEDISH_TIME, swedish_date
from matchers.model import Agreement, Offer, Patient, Request, Scenario
from matchers.scenario import ScenarioError, parse_scenario

FORMAT = "nvf-replay-stream"
VERSION = 1
MAX_EVENTS = 500_000
MAX_DAYS = 53 * 7
MAX_HOURS = 2000.0
EVENT_TYPES = ("offer", "request", "withdraw_offer", "withdraw_case", "clear", "answer")
Party = Literal["provider", "patient"]
Answer = Literal["accept", "decline", "none"]


class StreamError(ValueError):
    """A stream file that breaks the format; `problems` names each item, field and rule."""

    SHOWN = 20

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        lines = problems[: self.SHOWN] + ([f"... and {len(problems) - self.SHOWN} more"]
                                          if len(problems) > self.SHOWN else [])
        super().__init__(f"invalid stream {source}: {len(problems)} problem(s)\n  " + "\n  ".join(lines))


@dataclass(frozen=True)
class Behaviour:
    provider_decline_rate: float = 0.04
    patient_decline_rate: float = 0.06
    no_show_rate: float = 0.03
    provider_answer_hours: tuple[float, float] = (2.0, 40.0)
    patient_answer_hours: tuple[float, float] = (4.0, 100.0)
    referral_ack_hours: float = 20.0
    care_lead_days: int = 7

    def problems(self) -> list[str]:
        out = []
        for name in ("provider_decline_rate", "patient_decline_rate", "no_show_rate"):
            if not 0 <= getattr(self, name) <= 1:
                out.append(f"behaviour.{name}: must be between 0 and 1 [rate]")
        if self.no_show_rate + self.patient_decline_rate > 1:
            out.append("behaviour.no_show_rate: no-show plus patient decline rate must be at most 1 [rate]")
        for name in ("provider_answer_hours", "patient_answer_hours"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi <= MAX_HOURS:
                out.append(f"behaviour.{name}: must be [low, high] with 0 <= low <= high <= {MAX_HOURS:.0f} [range]")
        if not 0 <= self.referral_ack_hours <= MAX_HOURS:
            out.append(f"behaviour.referral_ack_hours: must be 0..{MAX_HOURS:.0f} [range]")
        if not 0 <= self.care_lead_days <= 365:
            out.append("behaviour.care_lead_days: must be 0..365 [range]")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"provider_decline_rate": self.provider_decline_rate,
                "patient_decline_rate": self.patient_decline_rate, "no_show_rate": self.no_show_rate,
                "provider_answer_hours": list(self.provider_answer_hours),
                "patient_answer_hours": list(self.patient_answer_hours),
                "referral_ack_hours": self.referral_ack_hours, "care_lead_days": self.care_lead_days}


@dataclass(frozen=True)
class OfferArrival:
    at: datetime
    offer: Offer


@dataclass(frozen=True)
class RequestArrival:
    at: datetime
    request: Request  # patients carry their predicted `breach_date` when the stream gives one


@dataclass(frozen=True)
class OfferWithdrawal:
    at: datetime
    offer_id: str


@dataclass(frozen=True)
class CaseWithdrawal:
    at: datetime
    case_ref: str


@dataclass(frozen=True)
class RecordedRound:
    at: datetime
    care_area: str
    as_of: date
    policy: str


@dataclass(frozen=True)
class RecordedAnswer:
    at: datetime
    case_ref: str
    offer_id: str
    party: Party
    answer: Answer


StreamEvent = OfferArrival | RequestArrival | OfferWithdrawal | CaseWithdrawal | RecordedRound | RecordedAnswer


@dataclass(frozen=True)
class Stream:
    name: str
    seed: int
    start: date
    end: date
    behaviour: Behaviour
    agreements: tuple[Agreement, ...]
    events: tuple[StreamEvent, ...]  # in time order (stable for equal times)
    answers: dict[tuple[str, str, str], RecordedAnswer] = field(default_factory=dict, compare=False)

    @property
    def offers(self) -> list[Offer]:
        return [e.offer for e in self.events if isinstance(e, OfferArrival)]

    @property
    def requests(self) -> list[Request]:
        return [e.request for e in self.events if isinstance(e, RequestArrival)]

    @property
    def patient_count(self) -> int:
        return sum(len(r.patients) for r in self.requests)

    @property
    def care_areas(self) -> list[str]:
        return sorted({o.care_area for o in self.offers} | {r.care_area for r in self.requests})


# --- writing --------------------------------------------------------------------------------


def _offer_json(o: Offer) -> dict[str, Any]:
    return {"offer_id": o.offer_id, "region": o.region, "unit_hsa_id": o.unit_hsa_id, "care_area": o.care_area,
            "capacity": o.capacity, "window_start": o.window_start.isoformat(),
            "window_end": o.window_end.isoformat(), "price_sek": o.price_sek}


def _request_json(r: Request) -> dict[str, Any]:
    def patient(p: Patient) -> dict[str, Any]:
        row = {"case_ref": p.case_ref, "waiting_since": p.waiting_since.isoformat()}
        if p.breach_date is not None:
            row["breach_date"] = p.breach_date.isoformat()
        return row

    return {"request_id": r.request_id, "region": r.region, "care_area": r.care_area,
            "window_start": r.window_start.isoformat(), "window_end": r.window_end.isoformat(),
            "max_price_sek": r.max_price_sek, "max_travel_km": r.max_travel_km,
            "excluded_regions": list(r.excluded_regions), "requires_agreement": r.requires_agreement,
            "patients": [patient(p) for p in r.patients]}


def _agreements_json(agreements: Iterable[Agreement]) -> list[dict[str, str]]:
    return [{"purchaser": a.purchaser, "provider": a.provider, "care_area": a.care_area} for a in agreements]


def scenario_json(scenario: Scenario) -> dict[str, Any]:
    """A scenario in the contract's file format (what `matchers.scenario.load_scenario` reads)."""
    return {"name": scenario.name, "as_of": scenario.as_of.isoformat(),
            "agreements": _agreements_json(scenario.agreements),
            "offers": [_offer_json(o) for o in scenario.offers],
            "requests": [_request_json(r) for r in scenario.requests]}


def _event_json(e: StreamEvent) -> dict[str, Any]:
    at = e.at.astimezone(SWEDISH_TIME).isoformat()
    match e:
        case OfferArrival(offer=o):
            return {"at": at, "type": "offer", "offer": _offer_json(o)}
        case RequestArrival(request=r):
            return {"at": at, "type": "request", "request": _request_json(r)}
        case OfferWithdrawal(offer_id=oid):
            return {"at": at, "type": "withdraw_offer", "offer_id": oid}
        case CaseWithdrawal(case_ref=c):
            return {"at": at, "type": "withdraw_case", "case_ref": c}
        case RecordedRound(care_area=a, as_of=d, policy=p):
            return {"at": at, "type": "clear", "care_area": a, "as_of": d.isoformat(), "policy": p}
        case RecordedAnswer(case_ref=c, offer_id=o, party=party, answer=ans):
            return {"at": at, "type": "answer", "case_ref": c, "offer_id": o, "party": party, "answer": ans}
    raise TypeError(type(e).__name__)


def stream_to_json(stream: Stream) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "name": stream.name, "seed": stream.seed,
            "start": stream.start.isoformat(), "end": stream.end.isoformat(),
            "behaviour": stream.behaviour.to_json(),
            "agreements": _agreements_json(stream.agreements),
            "events": [_event_json(e) for e in stream.events]}


def write_stream(stream: Stream, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(stream_to_json(stream), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


# --- reading --------------------------------------------------------------------------------


def _moment(value: Any, where: str, problems: list[str]) -> datetime | None:
    if not isinstance(value, str):
        problems.append(f"{where}: must be an ISO date-time string with a UTC offset [type]")
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"{where}: {value[:40]!r} is not an ISO date-time [format]")
        return None
    if moment.tzinfo is None:
        problems.append(f"{where}: {value[:40]!r} has no UTC offset [timezone]")
        return None
    return moment


def _day(value: Any, where: str, problems: list[str]) -> date | None:
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    problems.append(f"{where}: must be a YYYY-MM-DD date [format]")
    return None


def _text(value: Any, where: str, problems: list[str], limit: int = 128) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    problems.append(f"{where}: must be a non-empty string of at most {limit} characters [type]")
    return None


def _behaviour(raw: Any, problems: list[str]) -> Behaviour:
    if raw is None:
        return Behaviour()
    if not isinstance(raw, dict):
        problems.append("behaviour: must be an object [type]")
        return Behaviour()
    known = set(Behaviour.__dataclass_fields__)
    for key in sorted(set(raw) - known):
        problems.append(f"behaviour.{key}: unknown field [unknown]")
    values: dict[str, Any] = {}
    for key in known & set(raw):
        value = raw[key]
        if key.endswith("_hours") and key != "referral_ack_hours":
            if (not isinstance(value, list) or len(value) != 2
                    or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
                problems.append(f"behaviour.{key}: must be [low, high] hours [type]")
                continue
            values[key] = (float(value[0]), float(value[1]))
        elif key == "care_lead_days":
            if not isinstance(value, int) or isinstance(value, bool):
                problems.append(f"behaviour.{key}: must be a whole number of days [type]")
                continue
            values[key] = value
        else:
            if not isinstance(value, int | float) or isinstance(value, bool):
                problems.append(f"behaviour.{key}: must be a number [type]")
                continue
            values[key] = float(value)
    behaviour = Behaviour(**values)
    problems += behaviour.problems()
    return behaviour


def parse_stream(data: Any, source: str = "") -> Stream:
    """A `Stream` from decoded JSON, or `StreamError` naming every problem (nothing half-read)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise StreamError(["stream: must be a JSON object [type]"], source)
    if data.get("format") != FORMAT:
        problems.append(f"format: must be {FORMAT!r} [format]")
    if data.get("version") != VERSION:
        problems.append(f"version: this nvf reads version {VERSION}, not {data.get('version')!r} [version]")
    name = data.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        problems.append("name: must be a string of at most 200 characters [type]")
        name = ""
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
        problems.append("seed: must be a whole number 0 <= seed < 2**63 [range]")
        seed = 0
    start, end = _day(data.get("start"), "start", problems), _day(data.get("end"), "end", problems)
    if start and end and not 0 <= (end - start).days <= MAX_DAYS:
        problems.append(f"end: must be on or after start and at most {MAX_DAYS} days later [range]")
    behaviour = _behaviour(data.get("behaviour"), problems)
    raw_events = data.get("events")
    if not isinstance(raw_events, list):
        raise StreamError([*problems, "events: must be a list [type]"], source)
    if len(raw_events) > MAX_EVENTS:
        raise StreamError([*problems, f"events: at most {MAX_EVENTS} events [size]"], source)

    # Offers, requests and agreements go through the scenario contract's own parser.
    offers_raw: list[Any] = []
    requests_raw: list[Any] = []
    breach: dict[str, date] = {}
    shapes: list[tuple[int, datetime | None, str]] = []
    for i, raw in enumerate(raw_events):
        where = f"events[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be an object [type]")
            continue
        at = _moment(raw.get("at"), f"{where}.at", problems)
        if at is not None and start and end and not start <= swedish_date(at) <= end:
            problems.append(f"{where}.at: {raw['at']} is outside {start}..{end} [range]")
        kind = raw.get("type")
        if kind not in EVENT_TYPES:
            problems.append(f"{where}.type: must be one of {', '.join(EVENT_TYPES)} [type]")
            continue
        shapes.append((i, at, kind))
        if kind == "offer":
            offers_raw.append(raw.get("offer"))
        elif kind == "request":
            request = raw.get("request")
            if isinstance(request, dict) and isinstance(request.get("patients"), list):
                patients = []
                for j, p in enumerate(request["patients"]):
                    if isinstance(p, dict) and "breach_date" in p:
                        p = dict(p)
                        day = _day(p.pop("breach_date"), f"{where}.request.patients[{j}].breach_date", problems)
                        if day is not None and isinstance(p.get("case_ref"), str):
                            breach[p["case_ref"]] = day
                    patients.append(p)
                request = {**request, "patients": patients}
            requests_raw.append(request)
    try:
        book = parse_scenario({"name": name, "as_of": (start or date(2000, 1, 1)).isoformat(),
                               "agreements": data.get("agreements", []), "offers": offers_raw,
                               "requests": requests_raw}, source)
    except ScenarioError as exc:
        problems += [str(v) for v in exc.violations]
        raise StreamError(problems, source) from exc
    if problems:
        raise StreamError(problems, source)
    assert start is not None and end is not None

    offers, requests = iter(book.offers), iter(book.requests)
    offer_ids = {o.offer_id for o in book.offers}
    case_refs = {p.case_ref for r in book.requests for p in r.patients}
    events: list[tuple[datetime, int, StreamEvent]] = []
    answers: dict[tuple[str, str, str], RecordedAnswer] = {}
    for i, at, kind in shapes:
        raw = raw_events[i]
        where = f"events[{i}]"
        assert at is not None
        event: StreamEvent | None = None
        if kind == "offer":
            event = OfferArrival(at, next(offers))
        elif kind == "request":
            r = next(requests)
            with_breach = tuple(Patient(p.case_ref, p.waiting_since, breach_date=breach.get(p.case_ref))
                                for p in r.patients)
            event = RequestArrival(at, Request(r.request_id, r.region, r.care_area, r.window_start, r.window_end,
                                               r.max_price_sek, r.max_travel_km, r.excluded_regions,
                                               r.requires_agreement, with_breach))
        elif kind == "withdraw_offer":
            oid = _text(raw.get("offer_id"), f"{where}.offer_id", problems)
            if oid is not None and oid not in offer_ids:
                problems.append(f"{where}.offer_id: no offer {oid!r} in the stream [reference]")
            event = OfferWithdrawal(at, oid or "")
        elif kind == "withdraw_case":
            ref = _text(raw.get("case_ref"), f"{where}.case_ref", problems)
            if ref is not None and ref not in case_refs:
                problems.append(f"{where}.case_ref: no patient {ref!r} in the stream [reference]")
            event = CaseWithdrawal(at, ref or "")
        elif kind == "clear":
            area = _text(raw.get("care_area"), f"{where}.care_area", problems, 64)
            as_of = _day(raw.get("as_of"), f"{where}.as_of", problems)
            policy = raw.get("policy")
            if policy not in ("optimal", "greedy"):
                problems.append(f"{where}.policy: must be optimal or greedy [policy]")
            if area and as_of and policy in ("optimal", "greedy"):
                event = RecordedRound(at, area, as_of, str(policy))
        else:
            ref = _text(raw.get("case_ref"), f"{where}.case_ref", problems)
            oid = _text(raw.get("offer_id"), f"{where}.offer_id", problems)
            party, ans = raw.get("party"), raw.get("answer")
            if party not in ("provider", "patient"):
                problems.append(f"{where}.party: must be provider or patient [party]")
            if ans not in ("accept", "decline", "none"):
                problems.append(f"{where}.answer: must be accept, decline or none [answer]")
            if ref and oid and party in ("provider", "patient") and ans in ("accept", "decline", "none"):
                recorded = RecordedAnswer(at, ref, oid, party, ans)
                answers[ref, oid, str(party)] = recorded
                event = recorded
        if event is not None:
            events.append((at, i, event))
    if problems:
        raise StreamError(problems, source)
    events.sort(key=lambda t: (t[0], t[1]))
    return Stream(name, seed, start, end, behaviour, book.agreements, tuple(e for _, _, e in events), answers)


def load_stream(path: str | Path) -> Stream:
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise StreamError([f"{path}: cannot read the file: {exc.strerror or exc}"], str(path)) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StreamError([f"{path}: not valid JSON: {exc}"], str(path)) from exc
    return parse_stream(data, str(path))


def day_start(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SWEDISH_TIME)


def after(moment: datetime, hours: float) -> datetime:
    # Aware arithmetic in UTC: a DST change never shifts a delay by an hour.
    return (moment.astimezone(UTC) + timedelta(hours=hours)).astimezone(SWEDISH_TIME)
