"""Marks the named streams of a Singer catalog (from `--discover`) as selected, the others
not, and prints the catalog: what a user does by hand or with `singer-discover`.

usage: singer_select.py CATALOG.json STREAM[,STREAM...]
"""

import json
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as f:
        catalog = json.load(f)
    wanted = set(sys.argv[2].split(","))
    found = set()
    for stream in catalog["streams"]:
        chosen = stream["tap_stream_id"] in wanted
        if chosen:
            found.add(stream["tap_stream_id"])
        for m in stream.get("metadata", []):
            if m.get("breadcrumb") == []:
                m["metadata"]["selected"] = chosen
    missing = wanted - found
    if missing:
        sys.exit(f"streams not in the catalog: {sorted(missing)}")
    json.dump(catalog, sys.stdout)


if __name__ == "__main__":
    main()
