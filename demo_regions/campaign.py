"""The demo's built-in round: the spring 2026 cataract campaign.

A handful of regions have free cataract capacity this spring; several northern and central regions
have patients waiting well past the care guarantee. Some inguinal hernia and knee replacement
requests ride along. Generated from a fixed seed, so every demo run shows the same market.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from matchers.model import Agreement, Offer, Patient, Request, Scenario
from matchers.reference import regions

AS_OF = date(2026, 3, 2)

# (region, unit suffix, care area, capacity, first day, last day, price)
_OFFERS = [
    ("01", "KAT01", "cataract", 60, date(2026, 3, 9), date(2026, 4, 17), 9800),
    ("01", "KAT02", "cataract", 25, date(2026, 4, 1), date(2026, 5, 29), 10400),
    ("13", "KAT11", "cataract", 30, date(2026, 3, 2), date(2026, 3, 31), 9000),
    ("07", "KAT21", "cataract", 20, date(2026, 3, 16), date(2026, 5, 8), 9400),
    ("18", "KAT31", "cataract", 35, date(2026, 3, 9), date(2026, 4, 30), 9600),
    ("06", "KAT41", "cataract", 15, date(2026, 4, 6), date(2026, 5, 29), 9900),
    ("14", "BRA01", "inguinal-hernia", 12, date(2026, 3, 9), date(2026, 4, 24), 24500),
    ("12", "BRA11", "inguinal-hernia", 8, date(2026, 3, 23), date(2026, 5, 15), 23800),
    ("05", "KNA01", "knee-replacement", 6, date(2026, 3, 16), date(2026, 5, 29), 86000),
    ("19", "KNA11", "knee-replacement", 4, date(2026, 4, 13), date(2026, 6, 12), 91000),
]

# (region, care area, patients, max price, max travel km, requires agreement, excluded regions)
_REQUESTS = [
    ("25", "cataract", 70, 12000, 1300, False, ()),
    ("24", "cataract", 45, 12000, 1000, False, ()),
    ("23", "cataract", 40, 11500, 800, True, ()),
    ("20", "cataract", 35, 11000, 500, False, ("01",)),
    ("03", "cataract", 30, None, 300, False, ()),
    ("04", "cataract", 25, 10500, None, False, ()),
    ("22", "inguinal-hernia", 14, 26000, 900, False, ()),
    ("17", "inguinal-hernia", 9, 25000, None, False, ()),
    ("21", "knee-replacement", 8, 95000, 700, False, ()),
    ("09", "knee-replacement", 5, 90000, None, False, ()),
]

# (purchaser, provider, care area): 23 buys only under agreement; 25 and 24 have agreements too,
# which their navigators find in `nvf agreements search`.
_AGREEMENTS = [("23", "18", "cataract"), ("23", "07", "cataract"), ("25", "01", "cataract"), ("25", "18", "cataract"),
               ("24", "13", "cataract"), ("22", "14", "inguinal-hernia"), ("21", "05", "knee-replacement")]


def spring_cataract_campaign(seed: int = 2026) -> Scenario:
    rng = random.Random(seed)
    orgs = regions()
    offers = tuple(
        Offer(offer_id=f"off-{region}-{unit.lower()}", region=region,
              unit_hsa_id=f"SE{orgs[region].org_number.replace('-', '')}-{unit}", care_area=area,
              capacity=capacity, window_start=start, window_end=end, price_sek=price)
        for region, unit, area, capacity, start, end, price in _OFFERS
    )
    requests = []
    for region, area, count, max_price, max_km, needs_agreement, excluded in _REQUESTS:
        patients = tuple(
            # Decisions made 40 to 260 days before the round: most are past the 90-day guarantee.
            Patient(case_ref=f"case-{region}-{area[:3]}-{i:04d}",
                    waiting_since=AS_OF - timedelta(days=rng.randint(40, 260)))
            for i in range(1, count + 1)
        )
        requests.append(Request(
            request_id=f"req-{region}-{area}", region=region, care_area=area, window_start=AS_OF,
            window_end=AS_OF + timedelta(days=rng.choice((60, 75, 90))), max_price_sek=max_price,
            max_travel_km=max_km, excluded_regions=tuple(excluded), requires_agreement=needs_agreement,
            patients=patients))
    return Scenario(name="spring 2026 cataract campaign", as_of=AS_OF,
                    agreements=tuple(Agreement(p, v, a) for p, v, a in _AGREEMENTS),
                    offers=offers, requests=tuple(requests))
