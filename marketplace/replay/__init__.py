"""The policy sandbox (issue 16): replay a market's stream of arrivals on a simulated clock
through the marketplace's own lifecycle and clearing, under any clearing policy, against the
hindsight optimum.

Pure: `stream` (the format), `generate` (static scenario -> stream), `parties` (answers),
`policies`, `engine` (the replay), `metrics` (with the hindsight optimum), `report`, `sandbox`.
The one adapter is `recorded`, which reads a running marketplace's store as a stream.
"""
