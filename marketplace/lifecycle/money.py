"""Amounts in SEK, kept as Decimal to the öre so that sums never drift (the bus carries floats)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

ORE = Decimal("0.01")
ZERO = Decimal("0.00")


def money(amount: Decimal | float | int | str) -> Decimal:
    """`amount` in SEK rounded half-up to the öre.

    Floats go through `str` first: Decimal(0.1) is 0.1000000000000000055..., str(0.1) is "0.1".
    """
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {amount!r}")
    return value.quantize(ORE, rounding=ROUND_HALF_UP)
