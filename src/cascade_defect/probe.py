"""`python3 -m cascade_defect.probe URL`: exit 0 when URL answers 200 (container health checks and probes).

One word per argument, so it survives podman turning a Kubernetes exec probe into a shell line; standard
library only, so it runs in every image.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 -m cascade_defect.probe URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(argv[0], timeout=4) as r:
            return 0 if r.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
