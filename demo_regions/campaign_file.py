"""Write the demo's built-in spring 2026 cataract campaign as a scenario file (the contract's format),
the source of the shipped `cataract` sample stream:

    python -m demo_regions.campaign_file spring.json
    nvf stream generate spring.json --weeks 12 --seed 1 --care-area cataract \
        --out marketplace/replay/samples/cataract.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from demo_regions.campaign import spring_cataract_campaign
from marketplace.replay.stream import scenario_json


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m demo_regions.campaign_file OUT.json", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(json.dumps(scenario_json(spring_cataract_campaign()), ensure_ascii=False, indent=1)
                             + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
