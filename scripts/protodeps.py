"""Copy the third-party protos SmartStart imports from installed packages into a build dir.

buf and protoc both need google/api, google/rpc and google/type sources. They come from
the googleapis-common-protos wheel at build time, so nothing third-party is vendored.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import google.api

PACKAGES = ("api", "rpc", "type")


def main(dest: str) -> None:
    google_root = Path(next(iter(google.api.__path__))).parent
    out = Path(dest) / "google"
    for pkg in PACKAGES:
        target = out / pkg
        target.mkdir(parents=True, exist_ok=True)
        for proto in sorted((google_root / pkg).glob("*.proto")):
            shutil.copyfile(proto, target / proto.name)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".build/protodeps")
