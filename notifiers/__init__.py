"""SDK-style secure messages: envelope, signing, encryption, receipts, address book.

- `envelope`: the sealed message (JWS over JWE, profile documented there), `compose` (sender side),
  `verify_message` (what a router checks) and `open_message` (verify + decrypt)
- `receiving`: `receive` (open, de-duplicate, answer with a signed receipt), `SeenMessages`
- `receipts`: receipt codes and details, signing and verifying receipts
- `message_types`: the typed bodies, and the referral's staged-release gate
- `address_book`: organisations, functional addresses, public keys (current and retired) as JWKs
- `keystore`: one organisation's private keys on disk (0600), exposed as JWS-sign / JWE-decrypt only
- `provisioning`: `init_demo_keys`, `rotate_keys` over a key directory
- `delivery`: the `Delivery` port, an in-memory transport, `RetryPolicy`
- `crypto`: the pinned JOSE suite (joserfc), keys as JWKs, RFC 8785 JSON; `identifiers`: Swedish identifiers

May import `events` and nothing else of ours.
"""
