"""SDK-style secure messages: envelope, signing, encryption, receipts, address book.

- `envelope`: the sealed message, `compose` (sender side) and `open_message` (verify + decrypt)
- `receiving`: `receive` (open, de-duplicate, answer with a signed receipt), `SeenMessages`
- `receipts`: receipt codes and details, signing and verifying receipts
- `message_types`: the typed bodies, and the referral's staged-release gate
- `address_book`: organisations, functional addresses, public keys (current and retired)
- `keystore`: one organisation's private keys on disk (0600), exposed as sign/unwrap only
- `provisioning`: `init_demo_keys`, `rotate_keys` over a key directory
- `delivery`: the `Delivery` port, an in-memory transport, `RetryPolicy`
- `crypto`: the composition of `cryptography` primitives; `identifiers`: Swedish identifiers

May import `events` and nothing else of ours.
"""
