"""The region API: `/v1` over HTTP, served with the workers by `nvf serve` (issue 13).

A client authenticates (OAuth2 client credentials, or an external OpenID Connect issuer's token)
and then acts as its organisation through that organisation's own channel on the bus: its ingress
stream, under its own Redis user. The API adds nothing to what a region may do on the bus; it
reads from the marketplace's store what concerns the caller.
"""
