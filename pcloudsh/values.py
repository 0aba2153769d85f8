"""Command-line values checked before anything is sent to cped.

Each function returns the value in the form the API takes, or raises
``InvalidInput`` with one line that names the bad value.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

from foundation import model
from foundation.errors import InvalidInput
from pcloudsh.timetext import seconds_text

NAME_RULE = "1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit"


def check_name(value: str, what: str) -> str:
    try:
        return model.validate_name(value, what)
    except InvalidInput:
        raise InvalidInput(f"invalid {what} name {value!r}: use {NAME_RULE}") from None


def check_file(value: str, missing: str = "no such file") -> Path:
    """An existing regular file: a directory or a device is named as such, not as absent."""
    path = Path(value)
    if path.is_file():
        return path
    if path.is_dir():
        reason = "is a directory"
    elif path.exists():
        reason = "not a regular file"
    else:
        reason = missing
    raise InvalidInput(f"{value}: {reason}")


def parse_params(items: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; ``@ASSEMBLY:ipaddress|hostname`` values are references."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not model.PARAM_NAME_RE.match(key):
            raise InvalidInput(f"invalid parameter {item!r}: expected NAME=VALUE")
        if key in params:  # which one was meant cannot be told
            raise InvalidInput(f"parameter {key!r} given twice: give it once")
        params[key] = _param_value(value)
    return params


def _param_value(value: str) -> Any:
    if not value.startswith("@"):
        return value
    reference = model.parse_reference(value)
    if reference is None:
        raise InvalidInput(
            f"invalid reference {value!r}: expected @ASSEMBLY:ipaddress or @ASSEMBLY:hostname"
        )
    check_name(reference.assembly, "assembly")
    return reference.to_dict()


def parse_timeouts(items: list[str]) -> dict[str, float]:
    """``operation=duration`` pairs (``start=30s``)."""
    timeouts = {}
    for item in items:
        op, sep, value = item.partition("=")
        if not sep or op not in model.OPERATIONS:
            ops = "|".join(model.OPERATIONS)
            raise InvalidInput(f"invalid timeout {item!r}: expected {ops}=DURATION")
        if op in timeouts:
            raise InvalidInput(f"timeout of {op} given twice: give it once")
        timeouts[op] = parse_operation_duration(value, f"timeout of {op}")
    return timeouts


def parse_duration(value: str, what: str, maximum: float = model.MAX_DURATION) -> float:
    """A duration more than zero and at most ``maximum`` (the bound is said when passed)."""
    try:
        seconds = model.parse_duration(value, maximum)
    except ValueError as error:
        if str(error).startswith("too long"):
            raise InvalidInput(f"invalid {what}: {error}") from None
        seconds = 0.0
    if seconds <= 0:  # 0 is refused, never read as "do not wait": the range is said
        raise InvalidInput(
            f"invalid {what} {value!r}: expected a duration more than 0 and at most"
            f" {model.duration_text(maximum)}, such as 10, 10s or 2m"
        )
    return seconds


def check_description(value: str | None) -> str | None:
    """A description as typed: one line, no control characters, of bounded length."""
    if value is None:
        return None
    try:
        return model.check_description(value)
    except ValueError as error:
        raise InvalidInput(f"invalid description: {error}") from None


def parse_operation_duration(value: str, what: str) -> float:
    """A monitor interval or an operation timeout (at least 100 ms, at most a day)."""
    seconds = parse_duration(value, what, model.MAX_OPERATION)
    if seconds < model.MIN_OPERATION:
        raise InvalidInput(
            f"invalid {what} {value!r}: too short (at least {model.MIN_OPERATION * 1000:g} ms)"
        )
    return seconds


def parse_escalation(failures: str, period: str) -> model.Escalation:
    """FAILURES and PERIOD as typed; 0 failures, INFINITY or -1 disable escalation."""
    if _is_zero_duration(period) and _enables_escalation(failures):
        raise InvalidInput(
            f"invalid PERIOD {period!r}: must be more than zero (0 failures, INFINITY or -1"
            " turn escalation off)"
        )
    return _escalation(failures, period)


def _enables_escalation(failures: str) -> bool:
    """FAILURES that turn escalation on: with them a PERIOD of 0 can only be a mistake."""
    try:
        return model.parse_escalation_count(failures) > 0
    except ValueError:
        return False  # reported as an invalid FAILURES by the parse that follows


def _is_zero_duration(period: str) -> bool:
    """``0`` or ``0s`` typed as a period: a mistake, not a way to say off (which the API's
    own ``{"failures": 0, "period": 0}`` still is)."""
    try:
        return model.parse_duration(period) == 0
    except ValueError:
        return False


def _escalation(failures: str, period: str) -> model.Escalation:
    try:
        count = model.parse_escalation_count(failures)
    except ValueError:
        raise InvalidInput(
            f"invalid FAILURES {failures!r}: expected a whole number from 1 to"
            f" {model.MAX_FAILURES}, or 0, INFINITY or -1 to turn escalation off"
        ) from None
    try:
        seconds = model.parse_escalation_period(period)
    except ValueError:
        raise InvalidInput(
            f"invalid PERIOD {period!r}: expected a duration (60, 60s, 5m) of at most"
            f" {model.duration_text(model.MAX_DURATION)}, or INFINITY or -1 to turn escalation"
            " off"
        ) from None
    if (count > 0) != (seconds > 0):
        return model.Escalation()
    return model.Escalation(count, seconds)


def describe_escalation(data: Any) -> str:
    """``3 failures in 60 s`` or ``off`` from an escalation as the API writes it."""
    if not isinstance(data, dict):
        return "off"
    try:
        escalation = _escalation(str(data.get("failures")), str(data.get("period")))
    except InvalidInput:
        return "?"
    if not escalation.enabled:
        return "off"
    return f"{escalation.failures} failures in {seconds_text(escalation.period)}"


def parse_resource_id(value: str, what: str) -> str:
    """``ASSEMBLY/RESOURCE`` (both names checked), or a deployable's ``SERVICE``."""
    assembly, sep, resource = value.partition("/")
    if not sep:
        return check_name(value, "service")
    if "/" in resource:
        raise InvalidInput(f"invalid {what} {value!r}: expected ASSEMBLY/RESOURCE or SERVICE")
    check_name(assembly, "assembly")
    check_name(resource, "resource")
    return value


def split_resource(value: str, legacy_assembly: str | None = None) -> tuple[str, str]:
    """``(assembly, resource)`` from ``ASSEMBLY/RESOURCE``; or, in the original
    shell's order, ``RESOURCE`` followed by its ``ASSEMBLY`` (``legacy_assembly``)."""
    assembly, sep, resource = value.partition("/")
    if sep and legacy_assembly is None and "/" not in resource:
        return check_name(assembly, "assembly"), check_name(resource, "resource")
    if not sep and legacy_assembly is not None:
        return check_name(legacy_assembly, "assembly"), check_name(value, "resource")
    if legacy_assembly is not None and "/" not in resource:
        # a right ASSEMBLY/RESOURCE and a word after it: the word is the mistake
        raise InvalidInput(
            f"extra argument {legacy_assembly!r}: ASSEMBLY/RESOURCE names the assembly already"
        )
    raise InvalidInput(
        f"invalid resource {value!r}: expected ASSEMBLY/RESOURCE (or RESOURCE ASSEMBLY, the"
        " original order)"
    )


def parse_since(value: str, now: float) -> float:
    """A time: ``10m`` (ago), epoch seconds, ISO 8601 (``2024-05-01T12:00``), or a
    time of day (``23:08``, ``23:08:30``): its last time, today or yesterday."""
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        return now - model.parse_duration(value)
    except ValueError:
        pass
    try:
        if _TIME_OF_DAY.fullmatch(value):
            return _last_time_of_day(value, now)
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise InvalidInput(
            f"invalid time {value!r}: expected a duration ago (10m, 2h), epoch seconds, "
            "an ISO 8601 time or a time of day (23:08)"
        ) from None


_TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?")


def _last_time_of_day(value: str, now: float) -> float:
    """``HH:MM[:SS]`` local time, today, or yesterday when that is still to come."""
    today = datetime.fromtimestamp(now)
    clock = time.fromisoformat(f"0{value}" if value.index(":") == 1 else value)
    moment = datetime.combine(today.date(), clock)
    if moment > today:
        moment -= timedelta(days=1)
    return moment.timestamp()
