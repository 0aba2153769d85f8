"""Deployable documents in and out: ``deployable_export`` and ``deployable_import``."""

from __future__ import annotations

import argparse
import codecs
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from foundation import model
from foundation.errors import InvalidInput
from foundation.problems import Problems
from pcloudsh.environment import Environment
from pcloudsh.interrupts import interrupts_at_checkpoints, interrupts_held
from pcloudsh.output import Raw, Result, counted, done
from pcloudsh.resource import agent_spec, check_agent_parameters
from pcloudsh.values import check_name


def export_document(env: Environment, args: argparse.Namespace) -> Result:
    name = check_name(args.name, "deployable")
    fmt = args.format or "json"
    output = _output_file(args.output)
    if args.json and fmt != "json" and not output:
        raise InvalidInput(f"--json prints JSON: use it without --format {fmt}, or with -o FILE")
    if fmt == "cib":
        doc = env.api().deployable_cib(name)
        text = str(doc["cib"])
    else:
        doc = env.api().get_deployable(name)
        text = _dump(env, doc, fmt)
    if not output:
        return Result(doc, Raw(text))
    _write(Path(output), text)
    return done(
        f"deployable {name} exported to {output} ({fmt})",
        deployable=name,
        file=output,
        format=fmt,
    )


def _output_file(output: str | None) -> str | None:
    """The file -o names; None for standard output (no -o, or ``-o -`` as
    deployable_import's ``-`` reads standard input)."""
    if output == "":  # not the same as no -o: standard output would surprise
        raise InvalidInput("-o needs a file name: '' names none (leave -o out for standard output)")
    return None if output == "-" else output


def import_document(env: Environment, args: argparse.Namespace) -> Result:
    text = _read(env, args.file)
    doc = _load(env, text, args.format, args.file)
    deployable = model.parse(doc)  # every problem at once, with its path
    _check_agents(env, deployable)
    new_keys = _assemblies_without_keys(env, [a.name for a in deployable.assemblies])
    try:
        _make_keys(env, deployable.name, new_keys)  # all or none, Ctrl-C included
        with interrupts_held() as late:  # the commit completes, or never starts
            # as written: cped keeps the stored uuids the document leaves out
            env.api().put_deployable(deployable.name, doc)
    except BaseException:  # no keys without the rows they belong to
        env.keys.delete_many(new_keys)
        raise
    note = " (the interrupt came after the commit: the import is complete)" if late else ""
    warnings = half_set_escalations(doc)
    for warning in warnings:
        env.stderr.write(f"pcloudsh: warning: {warning}\n")
    return done(
        f"deployable {deployable.name} imported"
        f" ({counted(len(deployable.assemblies), 'assembly', 'assemblies')},"
        f" {counted(len(new_keys), 'new key pair', 'new key pairs')}){note}",
        deployable=deployable.name,
        assemblies=[a.name for a in deployable.assemblies],
        new_keys=new_keys,
        warnings=warnings,
    )


def half_set_escalations(doc: dict[str, Any]) -> list[str]:
    """An escalation given failures but no period is off, as the original's documents
    meant it; escalation_*_set refuses it, so an import that reads one says so
    rather than turn it off without a word (no failures, INFINITY or -1, is off
    on purpose, whatever the period)."""
    found = []
    for path, escalation in _escalations(doc):
        try:
            failures = model.parse_escalation_count(escalation.get("failures"))
            period = model.parse_escalation_period(escalation.get("period"))
        except ValueError:
            continue  # refused already, with its path
        if failures > 0 and period <= 0:
            found.append(
                f"{path}: {failures} failures and no period: escalation is off"
                " (give a period to turn it on)"
            )
    return found


def _escalations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, escalation) of the deployable, its assemblies and their resources."""
    yield from _escalation_at("escalation", doc)
    for i, assembly in enumerate(_items(doc.get("assemblies"))):
        yield from _escalation_at(f"assemblies[{i}].escalation", assembly)
        for j, resource in enumerate(_items(assembly.get("resources"))):
            yield from _escalation_at(f"assemblies[{i}].resources[{j}].escalation", resource)


def _escalation_at(path: str, part: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    escalation = part.get("escalation")
    if isinstance(escalation, dict):
        yield path, escalation


def _items(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _check_agents(env: Environment, deployable: model.Deployable) -> None:
    """What assembly_resource_add checks of an agent it is given: that this host has
    it, where the host's agents are the ones run (the local infrastructure; a guest
    image may have others), and each parameter one the agent takes.  Every problem
    at once, with its path."""
    read_agent = cache(env.read_agent)  # an agent's meta-data is read once
    on_this_host = deployable.infrastructure == "local"
    problems = Problems()
    for path, resource in _resources(deployable):
        try:
            if on_this_host:
                read_agent(agent_spec(resource))
        except InvalidInput as error:
            problems.add(f"{path}.type", error.message)
            continue
        try:
            check_agent_parameters(read_agent, resource, list(resource["parameters"]))
        except InvalidInput as error:
            problems.add(f"{path}.parameters", error.message)
    problems.raise_if_any()


def _resources(deployable: model.Deployable) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each resource and service as a document, with its path."""
    for i, assembly in enumerate(deployable.assemblies):
        for j, resource in enumerate(assembly.resources):
            yield f"assemblies[{i}].resources[{j}]", resource.to_dict()
    for k, service in enumerate(deployable.services):
        yield f"services[{k}]", service.to_dict()


def _assemblies_without_keys(env: Environment, assemblies: list[str]) -> list[str]:
    """Those that need new keys: the ones cped does not know yet (key files of theirs are
    left-overs of an import that never committed: not trusted) and those without keys."""
    known = {row["name"] for row in env.api().list_assemblies()}
    keys = env.keys
    return [a for a in assemblies if a not in known or not keys.exists(a)]


def _make_keys(env: Environment, deployable: str, assemblies: list[str]) -> None:
    if not assemblies:
        return
    total = len(assemblies)
    with env.show_progress(env.stderr, f"import {deployable}") as report:
        report("key pairs", 0.0)
        with interrupts_at_checkpoints() as checkpoint:  # a ^C between two keys

            def made(count: int) -> None:
                checkpoint()
                report("key pairs", count / total)

            env.keys.write_many(assemblies, made)
        report("key pairs", 1.0)


def _dump(env: Environment, doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    return env.codec.dump(doc, fmt)


def _load(env: Environment, text: str, fmt: str | None, source: str) -> dict[str, Any]:
    if not text.strip():
        raise InvalidInput(
            f"{_source(source)}: empty: expected a deployable document (JSON, YAML or XML)"
        )
    try:
        return env.codec.load(text, fmt)
    except InvalidInput as error:
        raise InvalidInput(f"{_source(source)}: {error.message}", details=error.details) from None
    except ValueError as error:  # a parser's own error, should the codec let one through
        raise InvalidInput(f"{_source(source)}: {error}") from None


def _read(env: Environment, file: str) -> str:
    if file == "-":
        buffer = getattr(env.stdin, "buffer", None)  # bytes, checked as a file's are
        return env.stdin.read() if buffer is None else utf8_text(buffer.read(), "standard input")
    try:
        data = Path(file).read_bytes()
    except OSError as error:
        raise InvalidInput(f"cannot read {file}: {error.strerror or error}") from None
    return utf8_text(data, file)


# Byte-order marks of the encodings a document saved by an editor may have instead.
_OTHER_UNICODE = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def utf8_text(data: bytes, source: str) -> str:
    """``data`` as UTF-8 text, or a refusal saying where it is not, and how to convert
    a UTF-16 or UTF-32 file (what Python's codec says names neither)."""
    for mark, encoding in _OTHER_UNICODE:
        if data.startswith(mark):
            raise InvalidInput(
                f"cannot read {source}: {encoding} text, not UTF-8"
                f" (iconv -f {encoding} -t UTF-8 converts it)"
            )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise InvalidInput(
            f"cannot read {source}: not UTF-8 text (byte 0x{data[error.start]:02x}"
            f" at line {line}, offset {error.start})"
        ) from None


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise InvalidInput(f"cannot write {path}: {error.strerror or error}") from None


def _source(file: str) -> str:
    return "standard input" if file == "-" else file
