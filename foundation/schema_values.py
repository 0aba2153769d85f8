"""The document's values as pydantic types: names, durations, scores, failure
counts, uuids, parameters, timeouts and the ends of order constraints.

Each checks a value as ``foundation.spelling`` reads it and refuses it in the
project's words (``not a duration: '10x'``), and says in JSON Schema what it
accepts, at least as much as it accepts (a request the document allows may
still be refused, never the other way round).  The models of
``foundation.schema`` and ``cpe.bodies`` are made of them.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import PlainValidator, ValidationInfo, WithJsonSchema
from pydantic_core import PydanticCustomError

from foundation.domain import (
    INFRASTRUCTURES,
    MONITORING_WORDS,
    OPERATIONS,
    RESOURCE_CLASSES,
    Reference,
    ResourceId,
    number_text,
    service_id,
)
from foundation.problems import kind
from foundation.schema_errors import is_lenient
from foundation.spelling import (
    MAX_DESCRIPTION,
    MAX_PARAMETER,
    NAME_PATTERN,
    PARAM_NAME_RE,
    check_description,
    name_problem,
    parse_duration,
    parse_escalation_count,
    parse_escalation_period,
    parse_operation_duration,
    parse_positive_duration,
    parse_reference,
    parse_score,
)

T = TypeVar("T")


def refused(message: str) -> PydanticCustomError:
    """A problem in the project's words (the message is not a format string)."""
    return PydanticCustomError("invalid", "{message}", {"message": message})


def spelled(parser: Callable[[Any], T]) -> Callable[[Any], T]:
    """A ``foundation.spelling`` parser as a validator: its ValueError is the problem."""

    def validate(value: Any) -> T:
        try:
            return parser(value)
        except ValueError as error:
            raise refused(str(error)) from None

    return validate


def member_of(values: tuple[str, ...]) -> PlainValidator:
    """A string among ``values``."""

    def validate(value: Any) -> str:
        if value not in values:
            raise refused(f"must be one of {', '.join(values)}: {value!r}")
        return str(value)

    return PlainValidator(validate)


def enum_schema(values: tuple[str, ...]) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "enum": list(values)})


def name_value(value: Any) -> str:
    """A name, or the problem with it."""
    problem = name_problem(value)
    if problem is not None:
        raise refused(problem)
    return str(value)


def _name_field(value: Any, info: ValidationInfo) -> str:
    if is_lenient(info.context) and name_problem(value) is not None:
        return value if isinstance(value, str) else ""  # kept, so what names it is found
    return name_value(value)


NAME_SCHEMA: dict[str, Any] = {"type": "string", "pattern": NAME_PATTERN}
Name = Annotated[str, PlainValidator(_name_field), WithJsonSchema(NAME_SCHEMA)]


def _agent_type_field(value: Any, info: ValidationInfo) -> str:
    whole = _whole_agent_name(value)
    if whole is not None and not is_lenient(info.context):
        raise refused(whole)
    return _name_field(value, info)


def _whole_agent_name(value: Any) -> str | None:
    """A resource's ``type`` written as the command line's whole agent name
    (``ocf:heartbeat:Dummy``): how the document spells it instead."""
    words = value.split(":") if isinstance(value, str) else []
    if len(words) == 3 and words[0] == "ocf":
        apart = f"class: ocf, provider: {words[1]}, type: {words[2]}"
    elif len(words) == 2 and words[0] in ("lsb", "systemd"):
        apart = f"class: {words[0]}, type: {words[1]}"
    else:
        return None
    return f"{value!r} is an agent's whole name; a document writes it apart: {apart}"


# a resource's agent type: a name, with a hint for the command line's ocf:PROVIDER:TYPE
AgentType = Annotated[str, PlainValidator(_agent_type_field), WithJsonSchema(NAME_SCHEMA)]
# a name a request may leave out (the URL's), given as null no more than a name
OptionalName = Annotated[str | None, PlainValidator(_name_field), WithJsonSchema(NAME_SCHEMA)]
_DURATION_TEXT = "seconds, or a duration such as '10s', '500ms', '2m', '1h'"
_DISABLED_TEXT = "INFINITY or -1 (or null, or empty) to disable"
_SCORE_TEXT = "a whole number, INFINITY or -INFINITY"


def _described(schema: dict[str, Any], description: str) -> WithJsonSchema:
    return WithJsonSchema({**schema, "description": description})


_NUMBER_OR_TEXT = [{"type": "number", "minimum": 0}, {"type": "string"}]
_POSITIVE_OR_TEXT = [{"type": "number", "exclusiveMinimum": 0}, {"type": "string"}]
_ESCALATION_VALUE = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]}
Duration = Annotated[
    float,
    PlainValidator(spelled(parse_duration)),
    _described({"anyOf": _NUMBER_OR_TEXT}, _DURATION_TEXT),
]
PositiveDuration = Annotated[
    float,
    PlainValidator(spelled(parse_positive_duration)),
    _described({"anyOf": _POSITIVE_OR_TEXT}, _DURATION_TEXT + "; more than zero"),
]
OperationDuration = Annotated[
    float,
    PlainValidator(spelled(parse_operation_duration)),
    _described({"anyOf": _POSITIVE_OR_TEXT}, _DURATION_TEXT + "; at least 100 ms, at most 1 day"),
]
Score = Annotated[
    int,
    PlainValidator(spelled(parse_score)),
    _described({"anyOf": [{"type": "integer"}, {"type": "string"}]}, _SCORE_TEXT),
]
FailureCount = Annotated[
    int,
    PlainValidator(spelled(parse_escalation_count)),
    _described(_ESCALATION_VALUE, f"a number of failures; {_DISABLED_TEXT}"),
]
Description = Annotated[
    str,
    PlainValidator(spelled(check_description)),
    _described(
        {"type": "string", "maxLength": MAX_DESCRIPTION},
        f"one line of text, at most {MAX_DESCRIPTION} characters, no control characters",
    ),
]
Period = Annotated[
    float,
    PlainValidator(spelled(parse_escalation_period)),
    _described(_ESCALATION_VALUE, f"{_DURATION_TEXT}; {_DISABLED_TEXT}"),
]
ResourceClass = Annotated[str, member_of(RESOURCE_CLASSES), enum_schema(RESOURCE_CLASSES)]
Infrastructure = Annotated[str, member_of(INFRASTRUCTURES), enum_schema(INFRASTRUCTURES)]


def _monitoring(value: Any) -> str:
    mode = MONITORING_WORDS.get(value) if isinstance(value, str) else None
    if mode is None:
        raise refused(f"must be active or passive (or am, pm): {value!r}")
    return mode


Monitoring = Annotated[
    str,
    PlainValidator(_monitoring),
    _described(
        {"type": "string", "enum": list(MONITORING_WORDS)},
        "active (an agent in each guest; the default) or passive; am, pm as in the original",
    ),
]


def _uuid(value: Any) -> str | None:
    """None when absent (the catalog keeps a stored one, or a new one is made)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise refused(f"must be a string, not {kind(value)}")
    try:
        return uuidlib.UUID(value).hex
    except ValueError:
        raise refused(f"not a uuid: {value!r}") from None


Uuid = Annotated[
    str | None,
    PlainValidator(_uuid),
    _described(
        {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "uuid (32 hex digits); generated when absent",
    ),
]


def _operation(value: Any) -> str:
    if value not in OPERATIONS:
        raise refused(f"unknown operation (one of {', '.join(OPERATIONS)})")
    return str(value)


Timeouts = Annotated[
    dict[Annotated[str, PlainValidator(_operation)], OperationDuration],
    _described(
        {
            "type": "object",
            "properties": {op: {"anyOf": _POSITIVE_OR_TEXT} for op in OPERATIONS},
            "additionalProperties": False,
        },
        "seconds (or a duration) for start, stop and monitor; default 20, at least 100 ms,"
        " at most 1 day",
    ),
]


def _parameter_name(value: Any) -> str:
    if not isinstance(value, str) or not PARAM_NAME_RE.match(value):
        raise refused(f"not a valid parameter name: {value!r}")
    return value


def _parameter(value: Any) -> str | Reference:
    """A value (numbers and booleans become text), or a reference to an assembly."""
    if isinstance(value, dict):
        ref = value.get("ref")
        reference = parse_reference(ref) if isinstance(ref, str) and len(value) == 1 else None
        if reference is None:
            raise refused('a reference must be {"ref": "ASSEMBLY:ipaddress|hostname"}')
        return reference
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_text(value)
    if not isinstance(value, str):
        raise refused(f"must be a string or a reference, not {kind(value)}")
    if "\0" in value or len(value) > MAX_PARAMETER:
        raise refused(f"must not contain NUL bytes or exceed {MAX_PARAMETER} characters")
    return value


_REFERENCE_SCHEMA = {
    "type": "object",
    "properties": {
        "ref": {"type": "string", "description": "ASSEMBLY:ipaddress or ASSEMBLY:hostname"}
    },
    "required": ["ref"],
    "additionalProperties": False,
}
Parameters = dict[
    Annotated[
        str,
        PlainValidator(_parameter_name),
        WithJsonSchema({"type": "string", "pattern": "^" + PARAM_NAME_RE.pattern[:-2] + "$"}),
    ],
    Annotated[
        str | Reference,
        PlainValidator(_parameter),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "string", "maxLength": MAX_PARAMETER},
                    {"type": "number"},
                    {"type": "boolean"},
                    _REFERENCE_SCHEMA,
                ]
            }
        ),
    ],
]


def _setting(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise refused(f"must be a string or number, not {kind(value)}")
    return value if isinstance(value, str) else number_text(value)


Settings = dict[
    str,
    Annotated[
        str,
        PlainValidator(_setting),
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "number"}]}),
    ],
]


def _resource_end(value: Any) -> ResourceId:
    if isinstance(value, str) and "/" not in value:
        return service_id(name_value(value))
    if not isinstance(value, str) or value.count("/") != 1:
        raise refused(f"must be ASSEMBLY/RESOURCE or SERVICE: {value!r}")
    assembly, resource = value.split("/")
    return ResourceId(name_value(assembly), name_value(resource))


ResourceEnd = Annotated[
    ResourceId,
    PlainValidator(_resource_end),
    WithJsonSchema({"type": "string", "description": "ASSEMBLY/RESOURCE or SERVICE"}),
]
