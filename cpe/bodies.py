"""What requests to cped carry: the models of request bodies and query parameters.

The document's own parts are ``foundation.schema``'s; here are the bodies only
the API has (a JEOS image to register, a membership, an escalation to set...)
and the query parameters of the routes that take any.  ``cpe.dispatch``
validates each request with the models its route names, and ``cpe.openapi``
writes them into the document cped serves: what is refused is what the
document says.  ``MODELS`` finds a model by the name a route gives it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, Field, PlainValidator, WithJsonSchema

from foundation.config import POLICY_ENGINES
from foundation.problems import Problems
from foundation.schema import DOCUMENT_MODELS, Assembly, Closed, Deployable, DeployableBase
from foundation.schema_values import (
    NAME_SCHEMA,
    Description,
    FailureCount,
    Name,
    OptionalName,
    Period,
    enum_schema,
    member_of,
    refused,
    spelled,
)
from foundation.spelling import check_name, parse_duration

MAX_EVENTS = 1000
MAX_EVENT_ID = 2**63 - 1  # SQLite's largest integer
MAX_WAIT = 600.0  # the longest a stop request may be asked to wait
MAX_KILL_AFTER = 3600.0


def _absolute_path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise refused(f"must be an absolute file path: {value!r}")
    return value


MAX_IMAGE_SIZE = 2**63 - 1  # bytes: what a file's size can be, and a client's int64
LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_IMAGE_SIZE:
        shown = value if len(str(value)) <= 40 else f"{str(value)[:20]}..."
        raise refused(f"must be a whole number 0..{MAX_IMAGE_SIZE} or null: {shown!r}")
    return value


def _created(value: Any) -> float | None:
    """A time as seconds since the epoch, between the epoch and the year 9999 (a
    date people and clients can show)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise refused(f"must be a number of seconds since the epoch or null: {value!r}")
    if not 0 <= value <= LATEST_TIME:
        raise refused(f"must be a time from 1970 to 9999 (seconds since the epoch): {value!r}")
    return float(value)


def _image_kind(value: Any) -> str:
    if value != "image":
        raise refused(f"must be 'image' ('host' is the built-in one): {value!r}")
    return "image"


class JeosNew(Closed):
    """A JEOS image file to register (``pcloudsh jeos_create`` and ``jeos_import`` do)."""

    what: ClassVar[str] = "invalid JEOS image"

    name: Name
    kind: Annotated[
        str, PlainValidator(_image_kind), WithJsonSchema({"type": "string", "enum": ["image"]})
    ] = "image"
    path: Annotated[str, PlainValidator(_absolute_path), WithJsonSchema({"type": "string"})] = (
        Field(description="absolute path of the qcow2 image")
    )
    arch: str | None = Field(default=None, description="default: this machine's")
    release: str = ""
    size: Annotated[
        int | None,
        PlainValidator(_size),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": MAX_IMAGE_SIZE},
                    {"type": "null"},
                ]
            }
        ),
    ] = None
    checksum: str | None = None
    created: Annotated[
        float | None,
        PlainValidator(_created),
        WithJsonSchema(
            {"anyOf": [{"type": "number", "minimum": 0, "maximum": LATEST_TIME}, {"type": "null"}]}
        ),
    ] = Field(default=None, description="default: now")


class AssemblyReplacement(Assembly):
    """An assembly's whole document; the name may be left out (the URL's); if given, the same."""

    name: OptionalName = None  # type: ignore[assignment]  # a request leaves it to the URL


class EscalationSetting(Closed):
    """Both halves of an escalation, each given (INFINITY or -1 to disable)."""

    what: ClassVar[str] = "invalid escalation"

    failures: FailureCount = Field(description="use INFINITY to disable")
    period: Period = Field(description="use INFINITY to disable")


class TemplateNew(Closed):
    what: ClassVar[str] = "invalid resource template"

    name: Name
    description: Description = ""
    resource: dict[str, Any] = Field(description="a Resource document without name")
    parameters_help: dict[str, str] = Field(default_factory=dict)


class DeployableNew(DeployableBase):
    """An empty deployable: its own settings; assemblies and the rest are added after."""

    what: ClassVar[str] = "invalid deployable"
    unknown_field: ClassVar[str] = "unknown field (import a whole document with PUT)"


class DeployableImport(Deployable):
    """A whole document; the name may be left out (the URL's); if given, the same.
    A reference may name an assembly not in it yet (the catalog's rule)."""

    references_may_wait: ClassVar[bool] = True

    name: OptionalName = None  # type: ignore[assignment]  # a request leaves it to the URL


class Membership(Closed):
    what: ClassVar[str] = "invalid request: expected {'assembly': NAME}"

    assembly: Name


class MoveRequest(Closed):
    what: ClassVar[str] = "invalid move"

    assembly: Name = Field(description="one of the service's assemblies")


class CleanupRequest(Closed):
    what: ClassVar[str] = "invalid clean-up"

    assembly: Name | None = Field(
        default=None, description="only this assembly (and its resources); none: everything"
    )
    resource: Name | None = Field(
        default=None, description="only this resource (or service copy) of the assembly"
    )


# ---------------------------------------------------------------------------
# query parameters (each a string in the URL)


class Query(BaseModel):
    """Query parameters: these and no other."""

    model_config = Closed.model_config
    what: ClassVar[str] = "invalid query"
    unknown_field: ClassVar[str] = "unknown query parameter"  # as on routes without a query


def _flag(value: Any) -> bool:
    """A query flag as the served document has it: ``true`` or ``false``."""
    if value is True or value == "true":
        return True
    if value is False or value == "false":
        return False
    raise refused(f"must be true or false: {value!r}")


def _at_most(maximum: float) -> PlainValidator:
    def seconds(value: Any) -> float:
        seconds: float = spelled(parse_duration)(value)
        if seconds > maximum:
            raise refused(f"at most {maximum:g} s: {value!r}")
        return seconds

    return PlainValidator(seconds)


def _whole(minimum: int, maximum: int) -> PlainValidator:
    def whole(value: Any) -> int:
        text = str(value)
        # isascii: str.isdigit() also accepts digits int() does not ("²"); the length
        # first: int() refuses thousands of digits, in words of its own
        digits = text.isascii() and text.isdigit() and len(text) <= len(str(maximum))
        if not digits or not minimum <= int(text) <= maximum:
            shown = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
            raise refused(f"must be a whole number {minimum}..{maximum}: {shown!r}")
        return int(text)

    return PlainValidator(whole)


def _epoch_seconds(value: Any) -> float:
    """A time as a number; ``nan`` and ``inf`` parse as floats but name no time."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise refused(f"must be a number of seconds since the epoch: {value!r}")
    return seconds


def _name_text(value: Any) -> str:
    problems = Problems()
    check_name(value, "", problems)
    if problems.items:
        raise refused(problems.items[0]["message"])
    return str(value)


Flag = Annotated[
    bool,
    PlainValidator(_flag),
    WithJsonSchema({"type": "string", "enum": ["true", "false"]}),
]
_DURATION_TEXT = "seconds or a duration such as 500ms, 30s, 2m"
QueryName = Annotated[str, PlainValidator(_name_text), WithJsonSchema(NAME_SCHEMA)]
EventId = Annotated[
    int,
    _whole(0, MAX_EVENT_ID),
    WithJsonSchema({"type": "integer", "minimum": 0, "maximum": MAX_EVENT_ID}),
]
EpochSeconds = Annotated[float, PlainValidator(_epoch_seconds), WithJsonSchema({"type": "number"})]


class DeleteQuery(Query):
    force: Flag = Field(default=False, description="delete even while running")


class ConstraintQuery(Query):
    first: str = Field(description="ASSEMBLY/RESOURCE that starts first")
    then: str = Field(description="ASSEMBLY/RESOURCE that starts after it")


class ColocationQuery(Query):
    service: str = Field(description="the colocated service")
    with_: str = Field(alias="with", description="the service it is colocated with")


class StopQuery(Query):
    wait: (
        Annotated[
            float,
            _at_most(MAX_WAIT),
            WithJsonSchema({"type": "string", "example": "30s"}),
        ]
        | None
    ) = Field(
        default=None,
        description="how long the request waits for the stop to complete (default 20 s, at"
        f" most 10 min): {_DURATION_TEXT}",
    )
    kill_after: (
        Annotated[
            float,
            _at_most(MAX_KILL_AFTER),
            WithJsonSchema({"type": "string", "example": "30s"}),
        ]
        | None
    ) = Field(
        default=None,
        description="SIGKILL the DPE if it has not stopped after this long (default: 30 s"
        " plus the resources' stop timeouts)",
    )


class SimulateQuery(Query):
    fail: str | None = Field(
        default=None,
        description="the parts that fail, comma-separated: ASSEMBLY (its instance is lost)"
        " or ASSEMBLY/RESOURCE (its monitor found it not running)",
    )
    policy_engine: Annotated[str, member_of(POLICY_ENGINES), enum_schema(POLICY_ENGINES)] | None = (
        Field(
            default=None,
            description="the planner: builtin or pacemaker (crm_simulate); default: [dped]"
            " policy_engine of the configuration",
        )
    )


class StreamQuery(Query):
    deployable: QueryName | None = Field(default=None, description="only this deployable's")
    assembly: QueryName | None = Field(default=None, description="only this assembly's")
    resource: QueryName | None = Field(default=None, description="only this resource's")
    after_id: EventId | None = Field(
        default=None,
        description="start after this event id (0 = from the oldest); default: only new"
        " events; the Last-Event-ID header takes precedence",
    )


class EventQuery(Query):
    """``order=asc`` (the default: oldest first, page on with ``after_id``) or ``desc``
    (newest first, page on with ``before_id``)."""

    deployable: QueryName | None = Field(default=None, description="only this deployable's")
    assembly: QueryName | None = Field(default=None, description="only this assembly's")
    resource: QueryName | None = Field(default=None, description="only this resource's")
    since: EpochSeconds | None = Field(
        default=None, description="only events at or after this time (seconds since the epoch)"
    )
    until: EpochSeconds | None = Field(
        default=None, description="only events at or before this time (seconds since the epoch)"
    )
    after_id: EventId | None = Field(
        default=None, description="only events with a larger id (page forward: the last id seen)"
    )
    before_id: EventId | None = Field(
        default=None, description="only events with a smaller id (page backward, with desc)"
    )
    limit: Annotated[
        int,
        _whole(1, MAX_EVENTS),
        WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_EVENTS}),
    ] = Field(default=100, description=f"at most this many events, 1..{MAX_EVENTS}")
    order: Annotated[str, member_of(("asc", "desc")), enum_schema(("asc", "desc"))] = Field(
        default="asc", description="asc: oldest first (default); desc: newest first"
    )


_REQUESTS: tuple[type[BaseModel], ...] = (
    JeosNew,
    AssemblyReplacement,
    EscalationSetting,
    TemplateNew,
    DeployableNew,
    DeployableImport,
    Membership,
    MoveRequest,
    CleanupRequest,
    DeleteQuery,
    ConstraintQuery,
    ColocationQuery,
    StopQuery,
    SimulateQuery,
    StreamQuery,
    EventQuery,
)
MODELS: dict[str, type[BaseModel]] = {m.__name__: m for m in (*DOCUMENT_MODELS, *_REQUESTS)}
