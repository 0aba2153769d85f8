"""``cped``: the cloud policy engine daemon (see cped(8))."""

from __future__ import annotations

from foundation.warning_policy import quiet_third_party_warnings

# before anything else is imported: a third-party import may warn
quiet_third_party_warnings()

import argparse
import sys
from pathlib import Path

from cpe.daemon import Options, run
from foundation import __version__
from foundation.paths import resolve


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="cped",
        description="pacemaker-cloud's cloud policy engine: keeps the catalog and the event"
        " log and serves the API on a UNIX socket.",
    )
    parser.add_argument(
        "-f", "--foreground", action="store_true", help="do not detach; log to standard error"
    )
    parser.add_argument(
        "-c", "--config", type=Path, metavar="FILE", help="configuration file (must exist)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    parser.add_argument("--version", action="version", version=f"cped {__version__}")
    args = parser.parse_args(argv)
    config = args.config.absolute() if args.config else None  # cped changes to / when detaching
    return Options(config_file=config, foreground=args.foreground, verbose=args.verbose)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv), resolve())


if __name__ == "__main__":
    sys.exit(main())
