"""Completion of command lines: existing names for the shell, whole words for bash.

The interactive shell asks ``list_names`` for the names an argument takes
(cmd2 does the rest).  Bash's completion (``contrib/bash-completion/pcloudsh``)
runs ``pcloudsh --complete INDEX WORD...`` and gets one candidate per line:
command names, a command's options, an argument's choices, or the existing
names it takes (asked of cped; none when cped does not answer).  Neither path
imports cmd2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from foundation.errors import PcloudError
from foundation.model import INFRASTRUCTURES
from pcloudsh import commands
from pcloudsh.definition import Arg, CommandSpec, Names
from pcloudsh.environment import Environment

GLOBAL_OPTIONS = ("--json", "--help", "--version")
Document = dict[str, Any]
Tokens = dict[str, list[str]]


def list_names(env: Environment, kind: Names, arg_tokens: dict[str, list[str]]) -> list[str]:
    """Existing names of ``kind``; ``arg_tokens`` holds the arguments already typed."""
    if kind is Names.INFRASTRUCTURE:  # known here: cped need not answer
        return list(INFRASTRUCTURES)
    if kind in _ROWS:
        return sorted(str(row.get("name")) for row in _ROWS[kind](env.api()))
    if kind is Names.RESOURCE:
        return _resources_of(env, arg_tokens.get("assembly", [""])[0])
    if kind is Names.ASSEMBLY_RESOURCE:
        return _all_resource_ids(env)
    if kind is Names.ASSEMBLY_SLASH:
        return sorted(f"{row.get('name')}/" for row in env.api().list_assemblies())
    if kind in _OF_THE_DEPLOYABLE:
        document = _deployable_on_the_line(env, arg_tokens)
        return sorted(set(_OF_THE_DEPLOYABLE[kind](document, arg_tokens))) if document else []
    raise ValueError(f"no completion for {kind}")


# the rows whose names complete a kind: the catalog's lists, some of them narrowed
# to what the command would take (an assembly in no deployable yet, a user template)
_ROWS: dict[Names, Callable[[Any], list[Document]]] = {
    Names.JEOS: lambda api: api.list_jeos(),
    Names.ASSEMBLY: lambda api: api.list_assemblies(),
    Names.FREE_ASSEMBLY: lambda api: [a for a in api.list_assemblies() if not a.get("deployable")],
    Names.DEPLOYABLE: lambda api: api.list_deployables(),
    Names.TEMPLATE: lambda api: api.list_templates(),
    Names.USER_TEMPLATE: lambda api: [t for t in api.list_templates() if not t.get("builtin")],
}


def _deployable_on_the_line(env: Environment, arg_tokens: dict[str, list[str]]) -> Document:
    """The document of the DEPLOYABLE already typed; empty before it is."""
    deployable = arg_tokens.get("deployable", [""])[0]
    return env.api().get_deployable(deployable) if deployable else {}


def _resources_of(env: Environment, assembly: str) -> list[str]:
    """The assembly's resources; before ASSEMBLY is typed, those of every assembly."""
    api = env.api()
    assemblies = [api.get_assembly(assembly)] if assembly else api.list_assemblies()
    names = {r["name"] for a in assemblies for r in a.get("resources") or [] if isinstance(r, dict)}
    return sorted(names)


def _all_resource_ids(env: Environment) -> list[str]:
    return sorted(
        f"{a['name']}/{r['name']}"
        for a in env.api().list_assemblies()
        for r in a.get("resources") or []
        if isinstance(r, dict)
    )


def _members(document: Document, _tokens: Tokens) -> list[str]:
    return [str(a["name"]) for a in document.get("assemblies", [])]


def _services(document: Document, _tokens: Tokens) -> list[str]:
    return [str(s["name"]) for s in document.get("services", [])]


def _candidates(document: Document, tokens: Tokens) -> list[str]:
    """The assemblies of the service typed (``NAME``) may run on."""
    name = tokens.get("name", [""])[0]
    services = [s for s in document.get("services", []) if s.get("name") == name]
    return [str(loc["assembly"]) for s in services for loc in s.get("locations", [])]


def _assembly_resources(document: Document) -> list[str]:
    assemblies = document.get("assemblies", [])
    return [f"{a['name']}/{r['name']}" for a in assemblies for r in a.get("resources", [])]


def _resource_ids(document: Document, tokens: Tokens) -> list[str]:
    """What an order constraint names: ASSEMBLY/RESOURCE, or a service by its name."""
    return _assembly_resources(document) + _services(document, tokens)


def _parts(document: Document, tokens: Tokens) -> list[str]:
    """What can fail or be cleaned up: the assemblies, their resources, and each copy
    of a service on an assembly it may run on."""
    names = _members(document, tokens) + _assembly_resources(document)
    copies = [
        f"{loc['assembly']}/{s['name']}"
        for s in document.get("services", [])
        for loc in s.get("locations", [])
    ]
    return names + copies


_OF_THE_DEPLOYABLE: dict[Names, Callable[[Document, Tokens], list[str]]] = {
    Names.RESOURCE_ID: _resource_ids,
    Names.PART: _parts,
    Names.MEMBER: _members,
    Names.SERVICE: _services,
    Names.CANDIDATE: _candidates,
}


# ---------------------------------------------------------------------------
# whole command lines (bash)


def complete_words(env: Environment, words: list[str], index: int) -> list[str]:
    """Candidates for ``words[index]`` (``words`` follow ``pcloudsh``; 0 is the first)."""
    typed = words[:index]
    current = words[index] if index < len(words) else ""
    while typed and typed[0] in GLOBAL_OPTIONS:
        typed = typed[1:]
    if not typed:
        names = [spec.name for _noun, spec in commands.all_commands()] + ["help"]
        options = list(GLOBAL_OPTIONS) if current.startswith("-") else []
        return _matching(names + options, current)
    if typed[0] == "help":
        return _matching([spec.name for _noun, spec in commands.all_commands()], current)
    found = commands.find(typed[0])
    if found is None:
        return []
    return _matching(_argument_candidates(env, found[1], typed[1:], current), current)


def _argument_candidates(
    env: Environment, spec: CommandSpec, typed: list[str], current: str
) -> list[str]:
    options = {flag: arg for arg in spec.args for flag in arg.flags if flag.startswith("-")}
    if current.startswith("-"):
        return [*options, "--json", "--help"]
    positional = [arg for arg in spec.args if not arg.flags[0].startswith("-")]
    words = _positional_words(typed, options)
    given = {arg.flags[0]: [word] for arg, word in zip(positional, words, strict=False)}
    if typed and typed[-1] in options and _takes_value(options[typed[-1]]):
        return _values(env, options[typed[-1]], given)
    arg = _next_positional(positional, len(words))
    return _values(env, arg, given) if arg else []


def _next_positional(positional: list[Arg], count: int) -> Arg | None:
    """The argument the next positional word fills (the last one, if it repeats)."""
    if count < len(positional):
        return positional[count]
    last = positional[-1] if positional else None
    return last if last is not None and last.options.get("nargs") in ("*", "+") else None


def _positional_words(typed: list[str], options: dict[str, Arg]) -> list[str]:
    """The words that are neither options nor an option's value."""
    words, skip = [], False
    for word in typed:
        if skip:
            skip = False
        elif word in options:
            skip = _takes_value(options[word])
        elif not word.startswith("-"):
            words.append(word)
    return words


def _takes_value(arg: Arg) -> bool:
    return arg.options.get("action") not in ("store_true", "store_false", "count")


def _values(env: Environment, arg: Arg, typed: dict[str, list[str]]) -> list[str]:
    choices = arg.options.get("choices")
    if choices:
        return [str(choice) for choice in choices]
    if arg.complete is None:
        return []
    try:
        return list_names(env, arg.complete, typed)
    except PcloudError:
        return []  # cped not running: nothing to offer, and nothing to say


def _matching(candidates: Iterable[str], prefix: str) -> list[str]:
    return sorted({c for c in candidates if c.startswith(prefix)})
