"""The deployable model: what cloud management software asks us to keep available.

The canonical form is a JSON document (``Deployable.to_dict``).  ``parse``
validates a whole document and reports every problem at once, each with its
path (``assemblies[1].resources[0].monitor_interval: not a duration: "10x"``).
Objects are frozen: a change is a new document.

This module is the model's one door.  Behind it: the objects
(``foundation.domain``), how values are spelled (``foundation.spelling``), the
document's shape as pydantic models (``foundation.schema``) and the rules a
shape cannot say (``foundation.checks``).  The schema and the checks are
imported when a document is first parsed, so importing this module stays
cheap: the shell's one-shot commands do.
"""

from __future__ import annotations

from foundation.domain import (
    DEFAULT_MONITOR_INTERVAL,
    DEFAULT_OP_TIMEOUT,
    INFINITY,
    INFRASTRUCTURES,
    MONITORING_MODES,
    MONITORING_WORDS,
    OPERATIONS,
    REFERENCE_ATTRIBUTES,
    RESOURCE_CLASSES,
    Assembly,
    Colocation,
    Constraint,
    Deployable,
    Escalation,
    Heartbeat,
    Location,
    ParamValue,
    Reference,
    Resource,
    ResourceId,
    Service,
    find_cycle,
    new_uuid,
    score_text,
    service_id,
)
from foundation.problems import Problems
from foundation.spelling import (
    DISABLED_WORDS,
    MAX_DESCRIPTION,
    MAX_DURATION,
    MAX_FAILURES,
    MAX_OPERATION,
    MIN_OPERATION,
    NAME_PATTERN,
    NAME_RE,
    PARAM_NAME_RE,
    check_description,
    check_name,
    duration_setting,
    duration_text,
    parse_duration,
    parse_escalation_count,
    parse_escalation_period,
    parse_reference,
    parse_score,
    validate_name,
)


def parse(data: object, *, references_may_wait: bool = False) -> Deployable:
    """Validate a whole deployable document (a decoded JSON object); with
    ``references_may_wait``, a reference may name an assembly not in it yet."""
    from foundation.schema import parse_deployable

    return parse_deployable(data, references_may_wait=references_may_wait)


def parse_assembly(data: object, path: str = "") -> Assembly:
    """Validate one assembly on its own (as the catalog stores it)."""
    from foundation import schema

    return schema.parse_assembly(data, path)


def parse_resource(data: object, path: str = "") -> Resource:
    from foundation import schema

    return schema.parse_resource(data, path)


__all__ = [
    "DEFAULT_MONITOR_INTERVAL",
    "DEFAULT_OP_TIMEOUT",
    "DISABLED_WORDS",
    "INFINITY",
    "INFRASTRUCTURES",
    "MAX_DESCRIPTION",
    "MAX_DURATION",
    "MAX_FAILURES",
    "MAX_OPERATION",
    "MIN_OPERATION",
    "MONITORING_MODES",
    "MONITORING_WORDS",
    "NAME_PATTERN",
    "NAME_RE",
    "OPERATIONS",
    "PARAM_NAME_RE",
    "REFERENCE_ATTRIBUTES",
    "RESOURCE_CLASSES",
    "Assembly",
    "Colocation",
    "Constraint",
    "Deployable",
    "Escalation",
    "Heartbeat",
    "Location",
    "ParamValue",
    "Problems",
    "Reference",
    "Resource",
    "ResourceId",
    "Service",
    "check_description",
    "check_name",
    "duration_setting",
    "duration_text",
    "find_cycle",
    "new_uuid",
    "parse",
    "parse_assembly",
    "parse_duration",
    "parse_escalation_count",
    "parse_escalation_period",
    "parse_reference",
    "parse_resource",
    "parse_score",
    "score_text",
    "service_id",
    "validate_name",
]
