"""Care agreements (vårdavtal): their lifecycle, rules, CSV import and search vocabulary.

Pure domain: no I/O here beyond reading the package's own vocabulary file. The store, the bus and
the search engines are adapters in `marketplace.services` and `marketplace.adapters`.
"""

from marketplace.agreements.lifecycle import (
    Agreement,
    AgreementRefused,
    AgreementStatus,
    Change,
    draft,
    end,
    legacy_agreement_id,
    register,
    register_triple,
    update,
)

__all__ = [
    "Agreement",
    "AgreementRefused",
    "AgreementStatus",
    "Change",
    "draft",
    "end",
    "legacy_agreement_id",
    "register",
    "register_triple",
    "update",
]
