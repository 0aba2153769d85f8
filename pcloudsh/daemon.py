"""cped itself: start, stop, status."""

from __future__ import annotations

import argparse
from typing import Any

from pcloudsh.definition import Arg, Noun, command
from pcloudsh.exitcodes import ExitCode
from pcloudsh.output import Result, Text, done
from pcloudsh.timetext import duration
from pcloudsh.values import parse_duration

START_TIMEOUT = 30.0  # cpe.control's default too: cped answers within a second unless loaded


class DaemonCommands(Noun):
    category = "Daemon (cped)"

    @command(
        Arg(
            "--timeout",
            metavar="DURATION",
            help=f"how long to wait for cped to answer (default {START_TIMEOUT:g}s)",
        )
    )
    def start(self, args: argparse.Namespace) -> Result:
        """Start cped, the cloud policy engine, in the background.

        Does nothing when it is already running.  Waits until cped answers, up to
        --timeout; after that it says so (exit 1) and cped may still be starting.
        """
        timeout = (
            START_TIMEOUT if args.timeout is None else parse_duration(args.timeout, "--timeout")
        )
        info = self.env.daemon.start(timeout)
        pid = info.get("pid")
        if info.get("already_running"):
            return done(f"cped is already running (pid {pid})", pid=pid, started=False)
        return done(f"cped started (pid {pid})", pid=pid, started=True)

    @command()
    def stop(self, args: argparse.Namespace) -> Result:
        """Stop cped; running deployables keep running and are adopted on the next start."""
        info = self.env.daemon.stop()
        if not info.get("was_running", True):
            return done("cped was not running", stopped=False)
        running = list(info.get("still_running") or [])
        message = f"cped stopped (pid {info.get('pid')})"
        if running:  # they are not stopped with cped: say so, not only in the man page
            message += f"; still running, adopted by the next cped: {', '.join(running)}"
        return done(message, pid=info.get("pid"), stopped=True, still_running=running)

    @command()
    def status(self, args: argparse.Namespace) -> Result:
        """Tell whether cped is running: exit status 0 when it is, 3 when it is not.

        With PCLOUD_URL, the cped of that listener, as the other commands.
        """
        health = self.env.daemon.status()
        if health is None:
            data = {"running": False, "socket": str(self.env.paths.socket)}
            return Result(data, Text("cped is not running"), ExitCode.UNREACHABLE)
        if health.get("status") == "unreachable":
            return _unreachable(health)
        return Result({"running": True, **health}, Text(_running_line(health)))


def _unreachable(health: dict[str, Any]) -> Result:
    """A local cped whose pidfile is held, or the ``PCLOUD_URL`` one: it does not answer."""
    if health.get("url"):
        text = f"cped does not answer at {health['url']}: {health.get('error')}"
        return Result({"running": False, **health}, Text(text), ExitCode.UNREACHABLE)
    text = f"cped (pid {health.get('pid')}) runs but does not answer: {health.get('error')}"
    return Result({"running": True, **health}, Text(text), ExitCode.UNREACHABLE)


def _running_line(health: dict[str, Any]) -> str:
    parts = [f"pid {health.get('pid')}", f"version {health.get('version')}"]
    uptime = health.get("uptime")
    if isinstance(uptime, int | float):
        parts.append(f"up {duration(uptime)}")
    where = f" at {health['url']}" if health.get("url") else ""
    return f"cped{where} is running ({', '.join(parts)})"
