"""The regions' own systems, as the demo plays them: outside parties of the marketplace.

They talk to the marketplace only as a region would: over the bus, each region as its own Redis
user, on the streams that region may use (its ingress, its secure submissions and receipts, its
inbox, its refusals and its case feed `to:<R>:cases`). They never read the marketplace's tables or
call its services (an import contract in pyproject.toml keeps it so).

- `campaign`: the built-in spring 2026 round; `agreements`, `scenario`: a scenario as the events its
  regions publish.
- `clock`: the simulated clock the demo's whole run is dated by.
- `identity`: the synthetic patients; `plans`: when each party acts on each case.
- `bus`: sending as a region; `feed`: the regions' view of their cases, from their feeds;
  `systems`: the regions' key stores, address book and receiving agents; `play`: the play itself.
"""
