"""``python -m rspp.testing.fakes``: serve every fake provider until interrupted.

Prints ``export`` lines; paste them into a shell and example specs that name real
providers (``pipelines/examples/cloud_*.yaml``) run against the fakes.
"""

from __future__ import annotations

import sys
import threading

from rspp.testing.fakes._standalone import FakeProviderServers


def main() -> None:
    with FakeProviderServers() as fakes:
        print(fakes.exports(), flush=True)
        print("# fake providers ready; Ctrl-C stops them", file=sys.stderr, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
