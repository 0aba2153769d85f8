"""Deployables: sets of assemblies with order constraints and escalation, and their lifecycle."""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from foundation import model
from foundation.errors import Conflict, InvalidInput, PcloudError, Unavailable
from pcloudsh.api import OperationFailed
from pcloudsh.definition import Arg, Names, Noun, command
from pcloudsh.environment import Environment
from pcloudsh.exitcodes import ExitCode, exit_code_for
from pcloudsh.follow import newest_event_id
from pcloudsh.output import Group, Notice, Result, Stream, Table, Text, columns, done
from pcloudsh.values import check_name, describe_escalation, parse_duration, parse_resource_id
from pcloudsh.waiting import DEFAULT_TIMEOUT, STOP_WAIT, wait_for, wait_for_reload

DEPLOYABLE = Arg("deployable", help="the deployable", complete=Names.DEPLOYABLE)
NAME = Arg("name", help="the deployable", complete=Names.DEPLOYABLE)
DEPLOYABLE_NAME = Arg(
    "deployable", metavar="NAME", help="the deployable", complete=Names.DEPLOYABLE
)
NAMES = Arg("names", nargs="*", metavar="NAME", help="the deployables", complete=Names.DEPLOYABLE)
ALL = Arg("--all", action="store_true", help="every deployable (instead of NAMEs)")
WAIT = Arg(
    "--wait",
    action="store_true",
    help="return once it is done (exit 1 if it fails or --timeout passes)",
)
TIMEOUT = Arg(
    "--timeout",
    metavar="DURATION",
    help=f"how long --wait waits (default {DEFAULT_TIMEOUT / 60:g}m)",
)
WATCH_INTERVAL = 2.0
CHANGING_BY_ITSELF = ("uptime", "lease_expires_in")
Lifecycle = Callable[[str, float | None], Result]
PURGE_TIMEOUT = 600.0  # a few deletions, each bounded by the driver's call timeout


class DeployableCommands(Noun):
    category = "Deployables"

    @command(
        Arg("name", help="the new deployable's name"),
        Arg(
            "infrastructure",
            nargs="?",
            default="local",
            complete=Names.INFRASTRUCTURE,
            help=f"where its assemblies run: {', '.join(model.INFRASTRUCTURES)} (default: local)",
        ),
        Arg(
            "mode",
            nargs="?",
            metavar="am|pm",
            help="active (am, the default: an agent in each guest) or passive (pm) monitoring",
        ),
        Arg(
            "--monitoring",
            choices=model.MONITORING_MODES,
            help="the same as am|pm: active or passive monitoring",
        ),
        Arg("--uri", help="libvirt: the hypervisor URI (default qemu:///system as root)"),
        Arg(
            "--set",
            dest="settings",
            metavar="KEY=VALUE",
            action="append",
            default=[],
            help="an infrastructure setting (for example network=netns; openstack: cloud=, "
            "flavor=, network=); may be repeated",
        ),
    )
    def deployable_create(self, args: argparse.Namespace) -> Result:
        """Create an empty deployable."""
        name = check_name(args.name, "deployable")
        if args.infrastructure not in model.INFRASTRUCTURES:
            raise InvalidInput(
                f"invalid infrastructure {args.infrastructure!r}: use one of "
                + ", ".join(model.INFRASTRUCTURES)
            )
        settings = _settings(args.settings)
        if args.uri is not None:
            if args.infrastructure != "libvirt":
                raise InvalidInput("--uri applies to the libvirt infrastructure only")
            settings["uri"] = args.uri
        body = {"name": name, "infrastructure": args.infrastructure, "settings": settings}
        monitoring = _monitoring(args.mode, args.monitoring)
        if monitoring:  # else cped's default
            body["monitoring"] = monitoring
        created = self.env.api().create_deployable(body)
        mode = f", {monitoring} monitoring" if monitoring else ""
        return done(
            f"deployable {name} created ({args.infrastructure}{mode})",
            deployable=name,
            uuid=created.get("uuid") if isinstance(created, dict) else None,
        )

    @command(
        NAME,
        Arg("--force", action="store_true", help="delete it even while it runs"),
        Arg(
            "--purge",
            action="store_true",
            help="openstack: also remove the images uploaded and the key pairs made for it",
        ),
    )
    def deployable_delete(self, args: argparse.Namespace) -> Result:
        """Delete a deployable; its assemblies stay in the catalog.

        With --purge, what its infrastructure keeps for its assemblies goes too (on
        openstack: their images in glance, the kernels and initrds no other image of
        ours boots, their key pairs), removed by dped after the deletion.
        """
        name = check_name(args.name, "deployable")
        document = self.env.api().get_deployable(name) if args.purge else None
        with lifecycle_request():  # refused while it runs: its state, not the input
            self.env.api().delete_deployable(name, force=args.force)
        if document is None:
            return done(f"deployable {name} deleted", deployable=name)
        removed = purge_images(document)
        count = sum(len(v) for v in removed.values())
        return done(
            f"deployable {name} deleted, {count} kept objects purged",
            deployable=name,
            purged=removed,
        )

    @command()
    def deployable_list(self, args: argparse.Namespace) -> Result:
        """List the deployables."""
        deployables = self.env.api().list_deployables()
        shown = [row | {"pending": _pending_mark(row)} for row in deployables]
        table = Table(
            columns(
                ("name", "Name"),
                ("infrastructure", "Infrastructure"),
                ("assemblies", "Assemblies"),
                ("state", "State"),
                ("pending", "Pending"),
                ("uuid", "UUID"),
            ),
            shown,
            empty="no deployables",
        )
        return Result(deployables, table)

    @command(DEPLOYABLE, Arg("assembly", help="the assembly to add", complete=Names.FREE_ASSEMBLY))
    def deployable_assembly_add(self, args: argparse.Namespace) -> Result:
        """Add an assembly to a deployable (an assembly belongs to one deployable at most)."""
        deployable = check_name(args.deployable, "deployable")
        assembly = check_name(args.assembly, "assembly")
        self.env.api().add_deployable_assembly(deployable, {"assembly": assembly})
        return done(
            f"assembly {assembly} added to deployable {deployable}",
            deployable=deployable,
            assembly=assembly,
        )

    @command(DEPLOYABLE, Arg("assembly", help="the assembly to remove", complete=Names.MEMBER))
    def deployable_assembly_remove(self, args: argparse.Namespace) -> Result:
        """Remove an assembly from a deployable; the assembly stays in the catalog."""
        deployable = check_name(args.deployable, "deployable")
        assembly = check_name(args.assembly, "assembly")
        self.env.api().remove_deployable_assembly(deployable, assembly)
        return done(
            f"assembly {assembly} removed from deployable {deployable}",
            deployable=deployable,
            assembly=assembly,
        )

    @command(DEPLOYABLE)
    def deployable_assembly_list(self, args: argparse.Namespace) -> Result:
        """List a deployable's assemblies."""
        deployable = check_name(args.deployable, "deployable")
        assemblies = self.env.api().get_deployable(deployable).get("assemblies", [])
        rows = [
            {
                "name": a.get("name"),
                "image": a.get("image"),
                "resources": len(a.get("resources", [])),
                "escalation": describe_escalation(a.get("escalation")),
                "uuid": a.get("uuid"),
            }
            for a in assemblies
        ]
        table = Table(
            columns(
                ("name", "Name"),
                ("image", "JEOS"),
                ("resources", "Resources"),
                ("escalation", "Escalation"),
                ("uuid", "UUID"),
            ),
            rows,
            empty="no assemblies",
        )
        return Result(assemblies, table)

    @command(
        DEPLOYABLE,
        Arg(
            "first",
            help="ASSEMBLY/RESOURCE (or SERVICE) started first",
            complete=Names.RESOURCE_ID,
        ),
        Arg(
            "then",
            help="ASSEMBLY/RESOURCE (or SERVICE) started after it",
            complete=Names.RESOURCE_ID,
        ),
    )
    def deployable_constraint_add(self, args: argparse.Namespace) -> Result:
        """Order two resources or services: THEN starts after FIRST and stops before it."""
        deployable, first, then = _constraint_args(args)
        self.env.api().add_constraint(deployable, {"first": first, "then": then})
        return done(
            f"order constraint {first} -> {then} added to deployable {deployable}",
            deployable=deployable,
            first=first,
            then=then,
        )

    @command(
        DEPLOYABLE,
        Arg("first", help="ASSEMBLY/RESOURCE", complete=Names.RESOURCE_ID),
        Arg("then", help="ASSEMBLY/RESOURCE", complete=Names.RESOURCE_ID),
    )
    def deployable_constraint_remove(self, args: argparse.Namespace) -> Result:
        """Remove an order constraint."""
        deployable, first, then = _constraint_args(args)
        self.env.api().remove_constraint(deployable, first=first, then=then)
        return done(
            f"order constraint {first} -> {then} removed from deployable {deployable}",
            deployable=deployable,
            first=first,
            then=then,
        )

    @command(DEPLOYABLE)
    def deployable_constraint_list(self, args: argparse.Namespace) -> Result:
        """List a deployable's order constraints."""
        deployable = check_name(args.deployable, "deployable")
        constraints = self.env.api().get_deployable(deployable).get("constraints", [])
        table = Table(
            columns(("first", "First"), ("then", "Then")), constraints, empty="no constraints"
        )
        return Result(constraints, table)

    # -- lifecycle ------------------------------------------------------------

    @command(NAMES, ALL, WAIT, TIMEOUT)
    def deployable_start(self, args: argparse.Namespace) -> Result:
        """Start deployables: cped runs a DPE that keeps each available (clears "failed").

        Without --wait it returns once the DPE is spawned; with --wait, once the
        deployable runs (exit 1 if it fails, or is not running within --timeout).
        Several deployables are all asked to start first (cped starts them a few
        at a time), then waited for together, within one --timeout.
        """
        names = _chosen(self.env, args.names, args.all)
        timeout = _wait_timeout(args.wait, args.timeout)
        if len(names) > 1 and timeout is not None:
            return self._start_all_then_wait(names, timeout)
        return self._each(names, timeout, self._start)

    def _start_all_then_wait(self, names: list[str], timeout: float) -> Result:
        """Every start sent, then each waited for until one deadline, with progress."""
        api = self.env.api()
        asked_after = {name: newest_event_id(api, deployable=name) for name in names}
        results = {name: self._attempt(self._start, name, None) for name in names}
        deadline = self.env.monotonic() + timeout
        waiting = [name for name in names if results[name].status == ExitCode.OK]
        with self.env.show_progress(self.env.stderr, "deployable_start") as progress:
            for done_so_far, name in enumerate(waiting):
                progress("running", done_so_far / len(waiting))
                left = max(0.0, deadline - self.env.monotonic())
                results[name] = self._attempt(self._running(asked_after[name]), name, left)
            progress("running", 1.0)
        return _together([results[name] for name in names])

    def _running(self, asked_after: int) -> Lifecycle:
        """Waits until the deployable runs; a failure counts once it came after
        ``asked_after``, the newest event before the start was asked."""

        def running(name: str, timeout: float | None) -> Result:
            status = wait_for(self.env, name, "started", timeout or 0.0, asked_after=asked_after)
            return running_result(name, status, state=status.get("state"))

        return running

    @staticmethod
    def _attempt(act: Lifecycle, name: str, timeout: float | None) -> Result:
        try:
            return act(name, timeout)
        except PcloudError as error:
            return _failed(name, error)

    @command(NAMES, ALL, WAIT, TIMEOUT)
    def deployable_stop(self, args: argparse.Namespace) -> Result:
        """Stop deployables: resources stop in reverse order, instances are destroyed.

        cped waits up to 20 s for the stop; with --wait the command waits until it
        is complete (exit 1 if it is not within --timeout).  Several deployables
        are all asked to stop first, then waited for together: up to 20 s in all,
        or within one --timeout.
        """
        names = _chosen(self.env, args.names, args.all)
        timeout = _wait_timeout(args.wait, args.timeout)
        if len(names) > 1:
            return self._stop_all_then_wait(names, timeout)
        return self._each(names, timeout, self._stop)

    def _stop_all_then_wait(self, names: list[str], timeout: float | None) -> Result:
        """Every stop sent (cped does not wait), then each waited for until one deadline."""
        asked = {name: self._attempt(self._ask_stop, name, None) for name in names}
        deadline = self.env.monotonic() + (STOP_WAIT if timeout is None else timeout)
        results = dict(asked)
        stopping = [name for name in names if _still_stopping(asked[name])]
        if not stopping:
            return _together([results[name] for name in names])
        with self.env.show_progress(self.env.stderr, "deployable_stop") as progress:
            for done_so_far, name in enumerate(stopping):
                progress("stopped", done_so_far / len(stopping))
                left = max(0.0, deadline - self.env.monotonic())
                results[name] = self._attempt(self._stopped_within(timeout is not None), name, left)
            progress("stopped", 1.0)
        return _together([results[name] for name in names])

    def _ask_stop(self, name: str, _timeout: float | None) -> Result:
        return self._stop_result(name, *self._request_stop(name, wait=0.0), None)

    def _stopped_within(self, must: bool) -> Lifecycle:
        """Waits until the deployable is stopped; not within the time, a failure if
        ``must`` (--wait), else said (as cped's own wait says it)."""

        def stopped(name: str, left: float | None) -> Result:
            try:
                wait_for(self.env, name, "stopped", left or 0.0)
            except OperationFailed:
                if must:
                    raise
                return done(_still_stopping_message(name), deployable=name, state="stopping")
            return done(f"deployable {name} stopped", deployable=name, state="stopped")

        return stopped

    def _each(self, names: list[str], timeout: float | None, act: Lifecycle) -> Result:
        """The action on each chosen deployable; the others still go on when one fails."""
        if not names:  # --all, and there are none: said, as deployable_list says it
            return Result([], Text("no deployables"))
        if len(names) == 1:
            return act(names[0], timeout)
        return _together([self._attempt(act, name, timeout) for name in names])

    def _start(self, name: str, timeout: float | None) -> Result:
        api = self.env.api()
        after = newest_event_id(api, deployable=name) if timeout is not None else None
        with lifecycle_request():
            answer = api.start_deployable(name)
        if timeout is not None:
            status = wait_for(self.env, name, "started", timeout, asked_after=after)
            return running_result(name, status, answer=answer)
        if answer.get("note") == "already running":
            message = f"deployable {name} already running"
        else:
            message = f"deployable {name} starting (deployable_status {name} shows how it goes)"
        return done(message, deployable=name, answer=answer)

    def _stop(self, name: str, timeout: float | None) -> Result:
        if timeout is None:
            return self._stop_result(name, *self._request_stop(name), None)
        # --timeout bounds the whole wait: cped's own wait for the stop is part of it
        started = self.env.monotonic()
        asked = self._request_stop(name, wait=min(timeout, STOP_WAIT))
        left = max(0.0, timeout - (self.env.monotonic() - started))
        return self._stop_result(name, *asked, left, started)

    def _request_stop(self, name: str, **query: float) -> tuple[bool, dict[str, Any]]:
        """Whether it was stopped already, and cped's answer."""
        api = self.env.api()
        with lifecycle_request():
            was_stopped = _is_stopped(api.deployable_status(name))
            answer = api.stop_deployable(name, **query)
        return was_stopped, answer

    def _stop_result(
        self,
        name: str,
        was_stopped: bool,
        answer: dict[str, Any],
        timeout: float | None,
        started: float | None = None,
    ) -> Result:
        state = "stopped"
        if was_stopped:
            message = f"deployable {name} already stopped"
        elif answer.get("state") == "stopped":
            message = f"deployable {name} stopped"
        elif timeout is not None:
            wait_for(self.env, name, "stopped", timeout, started=started)
            message = f"deployable {name} stopped"
        else:
            message, state = _still_stopping_message(name, answer.get("note")), "stopping"
        return done(message, deployable=name, answer=answer, state=state)

    @command(NAME, WAIT, TIMEOUT)
    def deployable_reload(self, args: argparse.Namespace) -> Result:
        """Make a running deployable's DPE apply the stored document (only what changed).

        With --wait it returns once the DPE has applied it and every part runs
        (exit 1 if the DPE refused it, the deployable failed, a resource cannot
        start, or not within --timeout).
        """
        name = check_name(args.name, "deployable")
        timeout = _wait_timeout(args.wait, args.timeout)
        api = self.env.api()
        after_id = newest_event_id(api, deployable=name) if timeout is not None else 0
        with lifecycle_request():
            answer = api.reload_deployable(name)
        if timeout is not None:
            status = wait_for_reload(self.env, name, after_id, timeout)
            return running_result(name, status, answer=answer)
        # the note says who reads the document, and when: no DPE may be running right now
        note = answer.get("note") if isinstance(answer, dict) else None
        message = f"deployable {name} reloading" + (f" ({note})" if note else "")
        return done(message, deployable=name, answer=answer)

    @command(
        DEPLOYABLE_NAME,
        Arg(
            "part",
            nargs="?",
            metavar="ASSEMBLY[/RESOURCE]",
            complete=Names.PART,
            help="only this assembly (with its resources) or this resource (default: all)",
        ),
    )
    def deployable_cleanup(self, args: argparse.Namespace) -> Result:
        """Forget failures, as crm_resource --cleanup: fail counts reset, recovery as new.

        The running DPE empties the failure windows of the scope (every resource
        and assembly, and the deployable's own, without ASSEMBLY; one assembly
        and its resources; one resource or service copy), ends its restart
        back-off, probes again a resource left unrecoverable, and plans again;
        an event says what was cleaned up.  A deployable that is not running
        has nothing to clean up (a stop forgets every failure).
        """
        name = check_name(args.deployable, "deployable")
        body = _cleanup_scope(args.part)
        answer = self.env.api().cleanup_deployable(name, body)
        scope = answer.get("scope") or "every part"
        return done(f"deployable {name}: {scope}: {answer.get('note')}", **answer)

    @command(NAME)
    def deployable_diff(self, args: argparse.Namespace) -> Result:
        """Show what deployable_reload would change in a running deployable.

        The stored document against the one its DPE runs: assemblies,
        resources, services (+ added, - removed, ~ changed, with the fields
        that changed), order constraints and colocations, and the deployable's
        settings with both values.  A change to a running deployable waits for
        deployable_reload; status and the list say "changes pending reload".
        """
        from pcloudsh.pending import diff

        return diff(self.env, args.name)

    @command(
        NAME,
        Arg("--watch", action="store_true", help="show it again whenever it changes (Ctrl-C ends)"),
        Arg(
            "--interval",
            metavar="DURATION",
            help=f"with --watch: how often to look (default {WATCH_INTERVAL:g}s)",
        ),
    )
    def deployable_status(self, args: argparse.Namespace) -> Result | Stream:
        """Show a deployable's state as a tree: assemblies, instances, resources, last events.

        The deployable's state (and the desired one when they differ), its DPE's
        pid and lease epoch; each assembly's state, instance, address and uptime;
        each resource's state, failures in its escalation window and last return
        code; then the last events.  States are coloured on a terminal.  --json
        prints cped's status document as it is.  --watch shows it again, under
        the time, each time it changes, until Ctrl-C (like crm_mon); with --json,
        one status document per line.
        """
        name = check_name(args.name, "deployable")
        if args.interval is not None and not args.watch:
            raise InvalidInput("--interval goes with --watch")
        if args.watch:
            interval = parse_duration(args.interval or str(WATCH_INTERVAL), "--interval")
            return Stream(self._watched(name, interval), quiet_interrupt=True)
        return self._status(name)

    def _status(self, name: str) -> Result:
        from pcloudsh.status import status_view

        with lifecycle_request():
            status = self.env.api().deployable_status(name)
        return Result(status, status_view(name, status, self.env.clock()))

    def _watched(self, name: str, interval: float) -> Iterator[Result | Notice]:
        """The status each time it changed (uptimes and lease countdowns aside).  Once
        shown, a cped that stops answering (restarted, say) is waited for, as
        ``events --follow`` waits: the deployable runs on meanwhile."""
        from pcloudsh.timetext import format_time

        seen: object = None
        lost = False
        while True:
            try:
                result = self._status(name)
            except Unavailable as error:
                if seen is None:
                    raise  # never answered: said at once, as a status without --watch
                if not lost:
                    yield Notice(f"lost cped: {error.message}; looking again every {interval:g} s")
                lost = True
                self.env.sleep(interval)
                continue
            if lost:
                yield Notice("cped answers again")
                lost = False
            if (changed := _lasting(result.data)) != seen:
                seen = changed
                when = Text(f"--- {format_time(self.env.clock())} ---")
                yield Result(result.data, Group([when, result.view]))
            self.env.sleep(interval)

    # -- documents ------------------------------------------------------------

    @command(
        NAME,
        Arg(
            "--format",
            choices=("json", "xml", "cib"),
            default=None,
            help="json (default), xml or cib",
        ),
        Arg(
            "-o",
            "--output",
            metavar="FILE",
            help="write to FILE instead of standard output (- for standard output)",
        ),
    )
    def deployable_export(self, args: argparse.Namespace) -> Result:
        """Print a deployable's whole document (JSON, or the original DPE XML schema).

        --format cib prints it as a Pacemaker CIB (crm_verify accepts it): the
        configuration from the document and, while it runs, a status section
        with what its DPE recorded; a deployable not running has an empty
        status section (nothing observed).
        """
        from pcloudsh.documents import export_document

        return export_document(self.env, args)

    @command(
        Arg("deployable", metavar="NAME", help="the deployable", complete=Names.DEPLOYABLE),
        Arg(
            "--fail",
            metavar="ASSEMBLY[/RESOURCE]",
            action="append",
            default=[],
            complete=Names.PART,
            help="a part that fails: an assembly (its instance is lost) or a resource"
            " (its monitor finds it not running); may be repeated",
        ),
        Arg("--dot", metavar="FILE", help="also write the plan as a Graphviz digraph to FILE"),
        Arg(
            "--policy-engine",
            choices=("builtin", "pacemaker"),
            default=None,
            help="the planner (default: [dped] policy_engine of the configuration)",
        ),
    )
    def deployable_simulate(self, args: argparse.Namespace) -> Result:
        """Show what the DPE would do if parts failed now; nothing changes.

        Planned from what the deployable's DPE recorded or, when it is not
        running, from everything up as the document asks.  First the
        escalations the failures would cause (a resource that keeps failing
        fails its assembly; an assembly that keeps failing restarts the
        deployable), then each action in order with the steps it waits for.
        --dot FILE writes the plan as a Graphviz digraph; --json prints the
        whole answer.  With --policy-engine pacemaker cped plans with
        crm_simulate (pacemaker-cli-utils).
        """
        from pcloudsh.simulation import simulate

        return simulate(self.env, args)

    @command(
        Arg("file", help="the document (- for standard input)"),
        Arg(
            "--format",
            choices=("json", "yaml", "xml"),
            default=None,
            help="the file's format (default: guessed from its content)",
        ),
    )
    def deployable_import(self, args: argparse.Namespace) -> Result:
        """Create or replace a deployable from a document (JSON, YAML or DPE XML).

        The whole document is checked first and every problem is reported with
        its place in the document; nothing changes unless all of it is valid.
        Assemblies it names are created or updated; those without keys get new ones.
        """
        from pcloudsh.documents import import_document

        return import_document(self.env, args)


@contextmanager
def lifecycle_request() -> Iterator[None]:
    """A lifecycle request cped refuses in the deployable's state has failed (exit 1)."""
    try:
        yield
    except Conflict as error:
        raise OperationFailed(error.message, details=error.details) from None


def running_result(name: str, status: dict[str, Any], **facts: Any) -> Result:
    """What --wait says once the deployable runs.  When some of its resources do not
    run, it has not started as asked: they are named and the command fails (exit 1),
    a bare "running" would read as all of it up (``not_running`` in --json)."""
    from pcloudsh.status import resources_not_running, short_of_running

    missing = resources_not_running(status)
    data = {"deployable": name, "not_running": missing, **facts}
    if not missing:
        return done(f"deployable {name} running", **data)
    message = f"deployable {name} running ({short_of_running(status) or 'not all of it'};"
    message += f" deployable_status {name} shows why)"
    parts = ", ".join(f"{r['assembly']}/{r['resource']} ({r['state']})" for r in missing)
    error = f"deployable {name}: not every resource runs: {parts}"
    return Result({"message": message, **data}, Text(message), ExitCode.FAILURE, (error,))


def _cleanup_scope(part: str | None) -> dict[str, str]:
    """The request's body: ``ASSEMBLY`` or ``ASSEMBLY/RESOURCE`` (names checked)."""
    if part is None:
        return {}
    assembly, sep, resource = part.partition("/")
    if sep and (not resource or "/" in resource):
        raise InvalidInput(f"invalid part {part!r}: expected ASSEMBLY or ASSEMBLY/RESOURCE")
    body = {"assembly": check_name(assembly, "assembly")}
    if sep:
        body["resource"] = check_name(resource, "resource")
    return body


def _pending_mark(row: dict[str, Any]) -> str:
    """The list's column: a change waits for deployable_reload."""
    return "reload" if row.get("pending_reload") else ""


def _lasting(status: Any) -> Any:
    """The status without what changes by itself as time passes."""
    if isinstance(status, list):
        return [_lasting(item) for item in status]
    if isinstance(status, dict):
        return {k: _lasting(v) for k, v in status.items() if k not in CHANGING_BY_ITSELF}
    return status


def _failed(name: str, error: PcloudError) -> Result:
    """One deployable of several could not be started or stopped: said on standard error,
    and the others go on.  The command then exits 1, as a partial failure (the man page's
    contract), whatever the error: only not reaching cped keeps its own status."""
    data = {"deployable": name, "error": error.to_dict()}
    status = exit_code_for(error)
    if status != ExitCode.UNREACHABLE:
        status = ExitCode.FAILURE
    return Result(data, Group([]), status, errors=(f"deployable {name}: {error.message}",))


def _still_stopping_message(name: str, note: str | None = None) -> str:
    why = f"{note}; " if note else ""
    return f"deployable {name} still stopping ({why}deployable_stop {name} --wait waits until it is done)"


def _still_stopping(result: Result) -> bool:
    data = result.data
    return (
        result.status == ExitCode.OK and isinstance(data, dict) and data.get("state") == "stopping"
    )


def _together(results: list[Result]) -> Result:
    """One result of several deployables: each one's, and the worst status."""
    worst = max((r.status for r in results), default=ExitCode.OK)
    errors = tuple(error for r in results for error in r.errors)
    return Result([r.data for r in results], Group([r.view for r in results]), worst, errors)


def _chosen(env: Environment, names: list[str], every: bool) -> list[str]:
    """NAMEs, or with --all every deployable (in the order cped lists them)."""
    if every and names:
        raise InvalidInput("give NAMEs or --all, not both")
    if every:
        return [row["name"] for row in env.api().list_deployables()]
    if not names:
        raise InvalidInput("give the deployable's NAME (several are fine), or --all")
    return [check_name(name, "deployable") for name in dict.fromkeys(names)]


def _wait_timeout(wait: bool, timeout: str | None) -> float | None:
    """Seconds --wait waits, or None without --wait."""
    if timeout is not None and not wait:
        raise InvalidInput("--timeout goes with --wait")
    if not wait:
        return None
    return DEFAULT_TIMEOUT if timeout is None else parse_duration(timeout, "--timeout")


def _is_stopped(status: dict[str, Any]) -> bool:
    """Nothing to stop: wanted stopped, recorded stopped, and no DPE alive."""
    dpe = status.get("dpe") or {}
    return (
        status.get("desired") == "stopped"
        and status.get("state") == "stopped"
        and not dpe.get("alive")
    )


def _constraint_args(args: argparse.Namespace) -> tuple[str, str, str]:
    deployable = check_name(args.deployable, "deployable")
    first = parse_resource_id(args.first, "FIRST")
    then = parse_resource_id(args.then, "THEN")
    return deployable, first, then


def _settings(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` options as a dict; a pair without ``=`` is invalid input, and
    so is a key given twice (which value was meant cannot be known)."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"not a KEY=VALUE setting: {pair!r}")
        if key in settings:
            raise InvalidInput(f"setting {key!r} given twice: give it once")
        settings[key] = value
    return settings


def _monitoring(word: str | None, option: str | None) -> str | None:
    """The mode asked for by ``am|pm`` (or active, passive) or ``--monitoring``."""
    if word is not None and option is not None:
        raise InvalidInput("give the monitoring mode once: am|pm or --monitoring")
    if word is None:
        return option
    mode = model.MONITORING_WORDS.get(word)
    if mode is None:
        raise InvalidInput(f"invalid monitoring {word!r}: use am (active) or pm (passive)")
    return mode


def purge_images(document: dict[str, object]) -> dict[str, list[str]]:
    """``dped --purge-images`` on the deleted deployable's document (openstacksdk runs there)."""
    from cpe.dpe_process import dped_command  # asyncio: only a purge pays for it

    with tempfile.TemporaryDirectory(prefix="pcloud-purge-") as work:
        path = Path(work) / "deployable.json"
        path.write_text(json.dumps(document))
        try:
            ran = subprocess.run(
                [*dped_command(), "--purge-images", "--document", str(path)],
                capture_output=True, text=True, timeout=PURGE_TIMEOUT, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as error:
            raise Unavailable(f"purging the images failed: {error}") from None
    if ran.returncode != 0:
        raise PcloudError(f"purging the images failed: {ran.stderr.strip()}")
    removed: dict[str, list[str]] = json.loads(ran.stdout or "{}")
    return removed
