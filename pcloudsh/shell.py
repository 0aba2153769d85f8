"""The interactive shell: a cmd2 application with one CommandSet per noun.

The CommandSets are built from the same command definitions the one-shot
runner uses; this layer adds tab completion of existing names, history and
the prompt.  Only this module imports cmd2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from typing import Any

import cmd2
from cmd2.exceptions import Cmd2ShlexError

from foundation.errors import PcloudError
from foundation.paths import HISTORY_MODE, private_file
from pcloudsh import commands
from pcloudsh.completion import list_names
from pcloudsh.definition import CommandSpec, Names, Noun
from pcloudsh.environment import Environment
from pcloudsh.eventline import event_line
from pcloudsh.exitcodes import ExitCode
from pcloudsh.live import LiveEvents, Shown
from pcloudsh.oneshot import run_command, version
from pcloudsh.output import Notice
from pcloudsh.render import is_terminal, rich_text, shown, shown_line
from pcloudsh.values import check_name

PROMPT = "pcloudsh# "
# cmd2 built-ins an admin shell does not need.
REMOVED_BUILTINS = ("edit", "run_pyscript", "shell", "macro", "alias", "set", "shortcuts")
cmd2.Cmd.DEFAULT_CATEGORY = "Shell"  # the category of cmd2's own commands (help, history, quit)


class NounSet(cmd2.CommandSet["PcloudShell"]):
    """Base of the generated CommandSets; ``noun`` is the class the commands come from."""

    noun: type[Noun]


def _live_parser() -> cmd2.Cmd2ArgumentParser:
    parser = cmd2.Cmd2ArgumentParser(
        description="Show new events above the prompt as they happen (on), or not (off); "
        "without an argument, tell whether they are shown.  They are on when the shell starts "
        "on a terminal."
    )
    parser.add_argument("state", nargs="?", choices=("on", "off"), help="on or off")
    parser.add_argument("--deployable", help="with on: only this deployable's events")
    return parser


class PcloudShell(cmd2.Cmd):
    DEFAULT_CATEGORY = "Shell"

    def __init__(
        self, env: Environment, *, history: bool = True, live_events: bool | None = None
    ) -> None:
        live_at_start = is_terminal(env.stdin) if live_events is None else live_events
        super().__init__(
            stdin=env.stdin,
            stdout=env.stdout,
            allow_cli_args=False,
            auto_load_commands=False,
            command_sets=[command_set(noun)() for noun in commands.NOUNS],
            intro=banner(live_at_start),
            persistent_history_file=private_history(env) if history else "",
            shortcuts={},
            terminators=[],
        )
        self.env = env
        self.prompt = PROMPT
        self.last_status: int = ExitCode.OK
        self.last_failure: int = ExitCode.OK  # the status of the last command that failed
        self.live = LiveEvents(lambda: env.connect_events(env.paths), self._show_live)
        self.live_at_start = live_at_start
        self.register_precmd_hook(self._assume_usage_error)
        for name in REMOVED_BUILTINS:
            if hasattr(cmd2.Cmd, f"do_{name}"):
                setattr(self, f"do_{name}", None)

    def onecmd_plus_hooks(self, line: str, **options: Any) -> bool:
        line = _json_after_the_command(backslash_escapes(line))
        # cmd2 reports a line it cannot split (an unclosed quote) and runs nothing
        self.last_status = ExitCode.USAGE if self._unreadable(line) else ExitCode.OK
        stop = bool(super().onecmd_plus_hooks(line, **options))
        if self.last_status != ExitCode.OK:
            self.last_failure = self.last_status
        return stop

    def _unreadable(self, line: str) -> bool:
        try:
            self.statement_parser.parse(line)
        except Cmd2ShlexError:
            return True
        return False

    def run(self, noun: type[Noun], spec: CommandSpec, args: argparse.Namespace) -> None:
        following = spec.name == "events" and args.follow
        self.live.muted = following  # what it prints would come again after it as alerts
        terminal = self.env.stdout
        self.env.stdout = self.stdout  # cmd2 points it at the file or pipe of `>` and `|`
        try:
            self.last_status = run_command(self.env, noun, spec, args, interactive=True)
        finally:
            self.env.stdout = terminal
            self.live.muted = False

    def _assume_usage_error(self, data: cmd2.plugin.PrecommandData) -> cmd2.plugin.PrecommandData:
        # A command whose arguments argparse rejects never reaches run(): status 2.
        name = data.statement.command
        mine = commands.find(name) is not None or name == "events_live"
        self.last_status = ExitCode.USAGE if mine else ExitCode.OK
        return data

    def default(self, statement: cmd2.Statement) -> bool | None:
        self.last_status = ExitCode.USAGE
        self.env.stderr.write(commands.unknown_command(statement.command, "try help") + "\n")
        return None

    def emptyline(self) -> bool:
        return False  # an empty line does nothing (the last command is not repeated)

    def preloop(self) -> None:
        if self.live_at_start:
            self.live.start()

    def postloop(self) -> None:
        self.live.stop()

    @cmd2.with_argparser(_live_parser)
    @cmd2.with_category("Events")
    def do_events_live(self, args: argparse.Namespace) -> None:
        """Show new events above the prompt as they happen (on), or not (off)."""
        self.last_status = ExitCode.OK
        if args.state == "on":
            try:
                deployable = args.deployable and check_name(args.deployable, "deployable")
            except PcloudError as error:
                self.env.stderr.write(f"pcloudsh: error: {error.message}\n")
                self.last_status = ExitCode.USAGE
                return
            self.live.start({"deployable": deployable} if deployable else None)
        elif args.state == "off":
            self.live.stop()
        self.env.stdout.write(self._live_state() + "\n")

    def _live_state(self) -> str:
        if not self.live.running:
            return "live events: off"
        deployable = self.live.filters.get("deployable")
        return (
            f"live events: on ({f'deployable {deployable}' if deployable else 'all deployables'})"
        )

    def _show_live(self, item: Shown) -> None:
        """From the live events thread: an alert, printed above the prompt."""
        if isinstance(item, Notice):
            self.add_alert(msg=rich_text(shown(f"pcloudsh: {item.text}")))
        else:
            self.add_alert(msg=rich_text(shown_line(event_line(item))))

    def do_exit(self, _: Any) -> bool:
        """Leave the shell."""
        return True

    def names(self, kind: Names, arg_tokens: dict[str, list[str]]) -> list[str]:
        """Existing names for completion; nothing when cped does not answer."""
        try:
            return list_names(self.env, kind, arg_tokens)
        except PcloudError:
            return []


def banner(live: bool) -> str:
    """The greeting; it says whether live events are on (off when stdin is no terminal)."""
    if live:
        events = 'New events appear above the prompt ("events_live off" hides them).\n'
    else:
        events = 'Live events are off ("events_live on" shows new events above the prompt).\n'
    return (
        f"pcloudsh {version()}: the admin shell of pacemaker-cloud.\n"
        'Type "help" for the commands, "help COMMAND" for one of them, "quit" to leave.\n'
        f"{events}"
    )


def command_set(noun: type[Noun]) -> type[NounSet]:
    """A CommandSet class holding the noun's commands as cmd2 ``do_`` methods."""
    set_name = f"{noun.__name__}Set"
    namespace: dict[str, Any] = {"DEFAULT_CATEGORY": noun.category, "noun": noun}
    for spec in noun.specs():
        namespace[f"do_{spec.name}"] = _do_method(set_name, noun, spec)
    return type(set_name, (NounSet,), namespace)


def _json_after_the_command(line: str) -> str:
    """``--json COMMAND ...`` as one-shot use takes it: cmd2 reads a line's first word
    as the command, so the option moves to just after it (before any pipe)."""
    words = line.lstrip().split(None, 2)
    if len(words) < 2 or words[0] != "--json":
        return line
    return " ".join([words[1], "--json", *words[2:]])


def backslash_escapes(line: str) -> str:
    """Words with a backslash escape read as a POSIX shell, and so the one-shot form,
    reads them: cmd2 splits words as on Windows, keeping a backslash, so ``my\\ dep``
    would be the two words ``my\\`` and ``dep``; it becomes the one word ``"my dep"``."""
    if "\\" not in line:
        return line
    return "".join(_requoted(token) for token in _posix_tokens(line))


def _posix_tokens(line: str) -> list[tuple[str, str | None]]:
    """(as typed, as a POSIX shell reads it if a backslash escapes in it, else None);
    the runs of blanks between words are tokens of their own, kept as typed."""
    tokens: list[tuple[str, str | None]] = []
    raw, value, escaped, quote, index = "", "", False, "", 0
    while index < len(line):
        char = line[index]
        if not quote and char.isspace():
            if raw:
                tokens.append((raw, value if escaped else None))
                raw, value, escaped = "", "", False
            tokens.append((char, None))
        elif not quote and char == "\\" and index + 1 < len(line):
            index += 1
            raw, value, escaped = raw + char + line[index], value + line[index], True
        elif (quote and char == quote) or (not quote and char in "\"'"):
            quote = "" if quote else char
            raw += char
        else:
            raw, value = raw + char, value + char
        index += 1
    if raw:
        tokens.append((raw, value if escaped else None))
    return tokens


def _requoted(token: tuple[str, str | None]) -> str:
    raw, value = token
    if value is None:
        return raw
    for quote in "\"'":
        if quote not in value:
            return f"{quote}{value}{quote}"
    return raw  # both kinds of quote in it: left to cmd2 as typed


def _do_method(set_name: str, noun: type[Noun], spec: CommandSpec) -> Any:
    def parser() -> cmd2.Cmd2ArgumentParser:
        built = spec.build_parser(
            cmd2.Cmd2ArgumentParser,
            spec.name,
            attach=_attach_completion,
            formatter_class=cmd2.RawDescriptionCmd2HelpFormatter,
        )
        assert isinstance(built, cmd2.Cmd2ArgumentParser)
        return built

    def do_command(self: NounSet, args: argparse.Namespace) -> None:
        self._cmd.run(noun, spec, args)

    do_command.__name__ = f"do_{spec.name}"
    do_command.__qualname__ = f"{set_name}.do_{spec.name}"
    do_command.__module__ = __name__
    do_command.__doc__ = spec.summary
    return cmd2.with_argparser(parser)(do_command)


def _attach_completion(action: argparse.Action, kind: Names) -> None:
    action.set_choices_provider(functools.partial(_complete, kind=kind))  # type: ignore[attr-defined]


def _complete(app: PcloudShell, arg_tokens: dict[str, list[str]], *, kind: Names) -> list[Any]:
    return [cmd2.CompletionItem(name) for name in app.names(kind, arg_tokens)]


def run_shell(env: Environment) -> int:
    """Run the interactive loop until quit, exit or end of input.  Commands piped in
    (standard input not a terminal) end with the status of the last one that failed,
    so that a batch script sees its errors; at a terminal, the person saw them."""
    shell = PcloudShell(env)
    try:
        status = int(shell.cmdloop())
    finally:
        shell.live.stop()  # also when the loop ends by an exception
    if is_terminal(env.stdin):
        return status
    return shell.last_failure or status


def private_history(env: Environment) -> str:
    """The history file, made readable by its owner only before cmd2 writes to it (a
    file that cannot be made is left to cmd2, which says so)."""
    path = env.history_file
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        private_file(path, HISTORY_MODE)
    return str(path)
