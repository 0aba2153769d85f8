"""``dped``: the deployable policy engine process (one per deployable).

    dped [-v] [--foreground] [--leave-running] [--clear-failed] [--stop-only] DEPLOYABLE
    dped [-v] --document FILE [--state-dir DIR] [--leave-running]
    dped --document FILE --export-cib
    dped --document FILE --purge-images

``--export-cib`` prints the document as a Pacemaker CIB (``dpe.cib``) and
exits: its configuration only, with an empty status section, since nothing of
the deployable has been observed.  ``--purge-images`` removes what the
infrastructure keeps for the document's assemblies (openstack: the images
uploaded to glance and the key pairs) and prints what it removed as JSON
(``pcloudsh deployable_delete --purge`` runs it, so openstacksdk stays out of
the shell's process).

Exit codes: 0 stopped cleanly (or left running when asked), 1 failure (lease
lost, store or driver unreachable...), 2 bad usage or an invalid document.
"""

from __future__ import annotations

from foundation.warning_policy import quiet_third_party_warnings

# before anything else is imported: a third-party import may warn
quiet_third_party_warnings()

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from dpe.dped_process import DpedSetup, ExitCode, read_document_file, serve
from foundation.config import load_config
from foundation.errors import InvalidInput, NotFound, PcloudError, Unavailable
from foundation.model import validate_name
from foundation.paths import LOG_MODE, Paths, private_file, resolve

LOG_FORMAT = "%(asctime)s dped[%(process)d] %(levelname)s %(name)s: %(message)s"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.deployable is None) == (args.document is None):
        _parser().print_usage(sys.stderr)
        print("dped: give either a DEPLOYABLE or --document FILE", file=sys.stderr)
        return ExitCode.USAGE
    if args.export_cib:
        return _export_cib(args)
    if args.purge_images:
        return _purge_images(args)
    if args.state_dir is not None and args.document is None:
        print("dped: --state-dir goes with --document", file=sys.stderr)
        return ExitCode.USAGE
    try:
        setup = _setup(args)
    except (InvalidInput, NotFound) as error:
        return _fail(error, ExitCode.USAGE)
    except PcloudError as error:
        return _fail(error, ExitCode.FAILURE)
    try:
        return asyncio.run(
            serve(
                setup,
                leave_running=args.leave_running,
                clear_failed=args.clear_failed,
                stop_only=args.stop_only,
            )
        )
    except PcloudError as error:
        return _fail(error, ExitCode.FAILURE)
    finally:
        setup.close()


def _export_cib(args: argparse.Namespace) -> int:
    """Print the document file as a CIB (no status: nothing observed); 2 if it is bad."""
    if args.document is None or args.leave_running or args.clear_failed or args.config:
        print("dped: --export-cib goes with --document FILE only", file=sys.stderr)
        return ExitCode.USAGE
    from dpe.cib import export_cib

    try:
        document = read_document_file(args.document)
    except PcloudError as error:
        return _fail(error, ExitCode.USAGE)
    sys.stdout.write(export_cib(document))
    return ExitCode.OK


def _purge_images(args: argparse.Namespace) -> int:
    """Remove the infrastructure's copies of the document's assemblies; print them as JSON."""
    if args.document is None or args.leave_running or args.clear_failed or args.export_cib:
        print("dped: --purge-images goes with --document FILE only", file=sys.stderr)
        return ExitCode.USAGE
    import json

    from dpe.drivers.registry import purge_images
    from foundation.keyfiles import load_assembly_keys

    try:
        document = read_document_file(args.document)
        paths = _paths(args.state_dir)
        names = [a.name for a in document.assemblies]
        public_keys = []
        for name in names:
            with contextlib.suppress(NotFound):  # an assembly deleted with its keys
                public_keys.append(load_assembly_keys(paths.keys_dir, name).public_key)
        removed = purge_images(
            document.infrastructure, paths, document.settings, names, public_keys
        )
    except (InvalidInput, NotFound) as error:
        return _fail(error, ExitCode.USAGE)
    except PcloudError as error:
        return _fail(error, ExitCode.FAILURE)
    print(json.dumps(removed))
    return ExitCode.OK


def _setup(args: argparse.Namespace) -> DpedSetup:
    if args.document is not None:
        _logging(args.verbose, logging.WARNING)
        return DpedSetup.from_file(args.document, _paths(args.state_dir), sys.stderr)
    validate_name(args.deployable, "deployable name")  # it becomes a file name
    paths = resolve()
    config = load_config(args.config or paths.config_file, required=args.config is not None)
    _logging(args.verbose, logging.getLevelName(config.dped.log_level.upper()))
    if not args.foreground:
        _log_to_file(paths, args.deployable)
    return DpedSetup.from_store(args.deployable, paths, config, member=args.member)


def _paths(state_dir: Path | None) -> Paths:
    if state_dir is None:
        return resolve()
    base = state_dir.absolute()
    return Paths(config_dir=base / "etc", state_dir=base, runtime_dir=base / "run")


def _logging(verbose: int, default: int) -> None:
    level = max(logging.DEBUG, default - 10 * verbose)
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    if verbose < 2:  # asyncssh logs every channel at INFO
        logging.getLogger("asyncssh").setLevel(max(level, logging.WARNING))


def _log_to_file(paths: Paths, deployable: str) -> None:
    """Not in the foreground: the log goes to the state directory, not a terminal."""
    path = paths.log_dir / f"dped-{deployable}.log"
    try:
        paths.log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(private_file(path, LOG_MODE))
    except OSError as error:
        raise Unavailable(f"cannot write the log {path}: {error.strerror}") from error
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)


def _fail(error: PcloudError, code: ExitCode) -> int:
    print(f"dped: {error}", file=sys.stderr)
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dped",
        description="Keep one deployable available: its instances, resources and recovery.",
    )
    parser.add_argument("deployable", nargs="?", help="run this deployable from the store")
    parser.add_argument(
        "--document",
        type=Path,
        metavar="FILE",
        help="run a document file instead (events on stderr)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="with --document: keys and instances under DIR",
    )
    parser.add_argument(
        "--export-cib",
        action="store_true",
        help="with --document: print it as a Pacemaker CIB and exit",
    )
    parser.add_argument(
        "--purge-images",
        action="store_true",
        help="with --document: remove the images and key pairs kept for its assemblies",
    )
    parser.add_argument(
        "--foreground", action="store_true", help="log to standard error (as under cped or systemd)"
    )
    parser.add_argument(
        "--leave-running",
        action="store_true",
        help="on SIGTERM exit and leave the instances to be adopted",
    )
    parser.add_argument(
        "--clear-failed", action="store_true", help="start again a deployable that had failed"
    )
    parser.add_argument(
        "--stop-only",
        action="store_true",
        help="stop what a previous DPE left (create nothing), then exit",
    )
    parser.add_argument(
        "--member",
        metavar="NAME",
        help="the cped member this DPE runs under (default: [cped] member)",
    )
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="configuration file (must exist; default: the one cped reads by default)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log (repeat for debug)"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
