"""``pcloudsh [--json] COMMAND ARGS...``: run one command and exit with its status.

This path imports neither cmd2 nor aiohttp: a one-shot command starts fast.
"""

from __future__ import annotations

import argparse
import gc
import json
import warnings

from foundation.errors import PcloudError
from pcloudsh import commands
from pcloudsh.completion import complete_words
from pcloudsh.definition import CommandParser, CommandSpec, Noun, ParserDone, UsageError
from pcloudsh.environment import Environment
from pcloudsh.exitcodes import ExitCode, exit_code_for
from pcloudsh.output import Outcome, Program, Stream
from pcloudsh.render import Printer, error_lines

USAGE = "usage: pcloudsh [--json] [--version] [COMMAND [ARGS...]]\n"
HELP_USAGE = "usage: pcloudsh help [COMMAND]\n\nList the commands, or show one command's help.\n"
ABOUT = """\
pcloudsh: the admin shell of pacemaker-cloud.
Without a command it starts an interactive shell; with one, it runs it and exits
(0 ok, 1 failed, 2 bad usage or invalid input, 3 cped not reachable, 130 interrupted).
Commands piped into the shell end it with the status of the last one that failed.
--json prints machine-readable JSON on stdout.  "pcloudsh help COMMAND" shows a command's help.
"""


def run(argv: list[str], env: Environment) -> int:
    try:
        return _run(argv, env)
    except UsageError as error:
        env.stderr.write(error.usage + error.message + "\n")
        return ExitCode.USAGE
    except ParserDone as done:
        return done.status
    except (KeyboardInterrupt, PcloudError) as error:
        _report(env, error)
        return exit_code_for(error)
    except BrokenPipeError:
        return ExitCode.FAILURE


def _run(argv: list[str], env: Environment) -> int:
    if argv[:1] == ["--complete"]:
        return _complete(env, argv[1:])
    as_json, rest = _global_options(argv, env)
    if not rest or rest[0] == "help":
        return show_help(env, rest[1:], as_json=as_json)
    noun, spec = _lookup(rest[0])
    parser = command_parser(spec, env)
    args = parser.parse_args(rest[1:])
    args.json = as_json or args.json
    return run_command(env, noun, spec, args)


def run_command(
    env: Environment,
    noun: type[Noun],
    spec: CommandSpec,
    args: argparse.Namespace,
    *,
    interactive: bool = False,
) -> int:
    """Run a parsed command and print what it returns; errors become exit codes."""
    printer = Printer(
        env.stdout, as_json=args.json, width=env.width, color=env.color, err=env.stderr
    )
    outcome: Outcome | None = None
    try:
        outcome = noun(env).handler(spec)(args)
        return _deliver(env, printer, outcome, interactive)
    except KeyboardInterrupt as error:
        if not (isinstance(outcome, Stream) and outcome.quiet_interrupt):
            _report(env, error)
        _let_go(error)
        return ExitCode.INTERRUPTED
    except PcloudError as error:
        _report(env, error)
        return exit_code_for(error)


def _let_go(interrupted: BaseException) -> None:
    """Free what the interrupted frames held.  Ctrl-C can come between a socket's
    making and its first use (``socket.socket()`` returned, not yet in a ``try``):
    freed with its frame, it is closed then, with a ResourceWarning that would
    follow the quiet end of ``--watch`` or ``--follow`` on standard error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        interrupted.__traceback__ = None
        gc.collect()  # frames in reference cycles too, while the warning is off


def _deliver(env: Environment, printer: Printer, outcome: Outcome, interactive: bool) -> int:
    if isinstance(outcome, Stream):
        printer.stream(outcome)
        return ExitCode.OK
    if isinstance(outcome, Program):
        return _hand_over(env, outcome, interactive)
    printer.result(outcome)
    return outcome.status


def _hand_over(env: Environment, program: Program, interactive: bool) -> int:
    """The shell runs the program and waits; one-shot becomes it (its status is ours)."""
    env.stdout.flush()
    env.stderr.flush()
    if interactive:
        return env.run_program(list(program.argv))
    env.exec_program(list(program.argv))
    return ExitCode.OK  # only a test's stand-in for exec comes back


def command_parser(spec: CommandSpec, env: Environment) -> CommandParser:
    parser = spec.build_parser(
        CommandParser,
        f"pcloudsh {spec.name}",
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    assert isinstance(parser, CommandParser)
    parser.out = env.stdout
    return parser


def show_help(env: Environment, topics: list[str], *, as_json: bool = False) -> int:
    if len(topics) > 1:
        raise UsageError(
            f"pcloudsh: error: help takes one command (got {' '.join(topics)!r})", HELP_USAGE
        )
    if as_json:
        env.stdout.write(json.dumps(_help_data(env, topics), indent=2) + "\n")
    elif not topics:
        env.stdout.write(USAGE + "\n" + ABOUT + "\n" + command_summary())
    elif topics[0] == "help":
        env.stdout.write(HELP_USAGE)
    else:
        _noun, spec = _lookup(topics[0])
        env.stdout.write(command_parser(spec, env).format_help())
    return ExitCode.OK


def _help_data(env: Environment, topics: list[str]) -> dict[str, object]:
    """What ``--json help`` prints: every command, or one command's arguments."""
    if not topics:
        listed = [
            {"name": spec.name, "group": noun.category, "summary": spec.summary}
            for noun in commands.NOUNS
            for spec in noun.specs()
        ]
        return {"program": "pcloudsh", "version": version(), "commands": listed}
    if topics[0] == "help":
        return {"command": "help", "usage": HELP_USAGE.splitlines()[0], "arguments": []}
    noun, spec = _lookup(topics[0])
    parser = command_parser(spec, env)
    return {
        "command": spec.name,
        "group": noun.category,
        "summary": spec.summary,
        "usage": " ".join(parser.format_usage().split()),
        "arguments": [_argument_data(action) for action in parser._actions if _shown(action)],
        "help": parser.format_help(),
    }


def _shown(action: argparse.Action) -> bool:
    return action.help != argparse.SUPPRESS


def _argument_name(action: argparse.Action) -> str:
    """``--timeout`` (the long flag), or a positional's metavar (``NAME``)."""
    flags = action.option_strings
    if flags:
        return next((flag for flag in flags if flag.startswith("--")), flags[0])
    return action.metavar if isinstance(action.metavar, str) else action.dest


def _repeated(action: argparse.Action) -> bool:
    """Several values at once (``NAME ...``), or an option given again (``--fail``)."""
    appends = isinstance(action, (argparse._AppendAction, argparse._AppendConstAction))
    return appends or action.nargs in ("*", "+", argparse.REMAINDER)


def _argument_data(action: argparse.Action) -> dict[str, object]:
    """One argument as a script needs it: its name or flags, whether it takes a
    value, may be repeated, is required, and what it says."""
    return {
        "name": _argument_name(action),
        "flags": list(action.option_strings),
        "takes_value": action.nargs != 0,
        "repeated": _repeated(action),
        "required": bool(action.required),
        "choices": list(action.choices) if action.choices is not None else None,
        "help": action.help,
    }


def command_summary() -> str:
    lines = []
    for noun in commands.NOUNS:
        lines.append(f"{noun.category}:")
        lines += [f"  {spec.name:<30} {spec.summary}" for spec in noun.specs()]
        lines.append("")
    return "\n".join(lines)


def _global_options(argv: list[str], env: Environment) -> tuple[bool, list[str]]:
    as_json = False
    for index, arg in enumerate(argv):
        if arg == "--json":
            as_json = True
        elif arg in ("-h", "--help"):
            return as_json, ["help"]
        elif arg == "--version":
            rest = argv[index + 1 :]
            _check_nothing_after_version(rest)
            _print_version(env, as_json or "--json" in rest)
            raise ParserDone(ExitCode.OK)
        elif arg.startswith("-"):
            raise UsageError(f"pcloudsh: error: unknown option {arg!r}", USAGE)
        else:
            return as_json, argv[index:]
    return as_json, []


def _print_version(env: Environment, as_json: bool) -> None:
    if as_json:  # a script asked for JSON: it gets JSON, as from every command
        env.stdout.write(json.dumps({"program": "pcloudsh", "version": version()}) + "\n")
    else:
        env.stdout.write(f"pcloudsh {version()}\n")


def _check_nothing_after_version(rest: list[str]) -> None:
    """``--version`` prints the version and exits: a word after it would be ignored."""
    extra = [arg for arg in rest if arg != "--json"]
    if extra:
        raise UsageError(
            f"pcloudsh: error: --version takes no arguments (got {' '.join(extra)!r})", USAGE
        )


def _complete(env: Environment, rest: list[str]) -> int:
    """``--complete INDEX WORD...``: one candidate per line for bash (see completion)."""
    if not rest or not rest[0].isdigit():
        raise UsageError("pcloudsh: error: --complete takes INDEX and the words", USAGE)
    words = rest[1:]
    for candidate in complete_words(env, words, int(rest[0])):
        env.stdout.write(candidate + "\n")
    return ExitCode.OK


def _lookup(name: str) -> tuple[type[Noun], CommandSpec]:
    found = commands.find(name)
    if found is None:
        raise UsageError(commands.unknown_command(name, "pcloudsh help lists them"), USAGE)
    return found


def _report(env: Environment, error: BaseException) -> None:
    if isinstance(error, KeyboardInterrupt):
        env.stderr.write("pcloudsh: interrupted\n")
        return
    env.stderr.write("\n".join(error_lines(error)) + "\n")


def version() -> str:
    from foundation import __version__  # the package version (importlib.metadata is slow to load)

    return __version__
