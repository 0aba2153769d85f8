"""The deployable document in its three spellings: JSON, YAML and the original's XML.

JSON is canonical.  YAML is accepted on import.  XML is the 2012 project's DPE
configuration schema (``deployable/assemblies/assembly/services/service``),
accepted on import and produced on export; its misspellings (``paramaters``,
``service_dependancy``) are read, and our additions (infrastructure, image,
timeouts, heartbeat, deployable escalation) ride along as extra attributes so
an XML export imports back into the same document.

These functions only change the spelling: ``foundation.model.parse`` validates.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

import yaml

from foundation.domain import OPERATIONS
from foundation.errors import InvalidInput
from foundation.problems import Problems, join

FORMATS = ("json", "yaml", "xml")

# A deployable document nests a handful of levels; far deeper ones would exhaust
# the stack of whatever walks them next (validation, json.dumps, the store).
MAX_DEPTH = 64

# Editors on Windows save UTF-8 with one; it is no part of the document, but would
# hide an XML or JSON start from sniff_format and make json refuse the text.
BYTE_ORDER_MARK = "\ufeff"


def sniff_format(text: str) -> str:
    start = text.lstrip()[:1]
    if start == "<":
        return "xml"
    if start in ("{", "["):
        return "json"
    return "yaml"


def load_document(text: str, fmt: str | None = None) -> dict[str, Any]:
    """Decode a document into the canonical dict; InvalidInput names what is wrong."""
    text = text.removeprefix(BYTE_ORDER_MARK)
    fmt = fmt or sniff_format(text)
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown document format {fmt!r} (one of {', '.join(FORMATS)})")
    data = _DECODERS[fmt](text)
    if not isinstance(data, dict):
        raise InvalidInput(f"a deployable document must be an object, not {kind_of(data)}")
    check_depth(data)  # first: a YAML alias may make it a cycle, which this refuses
    check_unicode(data)
    return data


def kind_of(value: object) -> str:
    """What a decoded value is, in the document's words (null, a list, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else "a value"


def check_depth(value: object, limit: int = MAX_DEPTH) -> None:
    """InvalidInput if lists and objects nest more than ``limit`` levels deep;
    walked with a stack of its own, so any depth is measured safely."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = _children(item)
        if children and depth > limit:
            raise InvalidInput(nested_too_deeply(limit))
        pending.extend((child, depth + 1) for child in children)


def _children(value: object) -> list[object]:
    """What a list or an object holds; an empty one holds nothing, so nests nothing."""
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, list) else []


def check_unicode(value: object) -> None:
    """InvalidInput naming the first text (a key or a value) that holds a lone
    surrogate: JSON's ``\\ud800`` escape reads as one, but it is no character, and
    UTF-8 (the store, the agents' environment) cannot carry it."""
    pending: list[tuple[object, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                where = f"{path}: " if path else ""
                raise InvalidInput(
                    f"{where}holds a lone surrogate ({_first_surrogate(item)}),"
                    " not a character: text must be valid Unicode"
                )
            continue
        if isinstance(item, dict):
            for key, child in item.items():
                pending.append((key, path))
                pending.append((child, join(path, key)))
        elif isinstance(item, list):
            pending.extend((child, join(path, i)) for i, child in enumerate(item))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _first_surrogate(text: str) -> str:
    match = _SURROGATE.search(text)
    return f"\\u{ord(match.group()):04x}" if match else ""


def nested_too_deeply(limit: int = MAX_DEPTH) -> str:
    return f"nested too deeply (lists and objects at most {limit} levels deep)"


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (``object_pairs_hook``): with a key
    twice, json would keep the last value and drop the other without a word."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"the key {key!r} appears twice in one object")
        data[key] = value
    return data


def number_too_long(error: ValueError) -> str | None:
    """The words for a number past Python's integer-digits limit, if that is the error."""
    if "integer string conversion" not in str(error):
        return None
    return f"a number is too long (at most {sys.get_int_max_str_digits()} digits)"


def dump_document(doc: Mapping[str, Any], fmt: str = "json") -> str:
    if fmt == "json":
        return json.dumps(doc, indent=2) + "\n"
    if fmt == "yaml":
        return yaml.safe_dump(dict(doc), sort_keys=False)
    if fmt == "xml":
        return _xml_text(doc)
    raise InvalidInput(f"unknown document format {fmt!r} (one of {', '.join(FORMATS)})")


# Characters XML 1.0 cannot carry at all, not even as &#1;.
_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(doc: Mapping[str, Any]) -> str:
    """The XML of a document, which reads back as the same document: a value XML
    cannot hold is refused (JSON holds it), and a carriage return in a value is
    written as &#13; (a parser turns a written one, before a newline, into none)."""
    place = _first_not_in_xml(doc, "")
    if place is not None:
        raise InvalidInput(
            f"{place}: holds a control character XML cannot carry: export it as JSON"
        )
    root = _xml_deployable(doc)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode").replace("\r", "&#13;") + "\n"


def _first_not_in_xml(value: object, path: str) -> str | None:
    """The path of the first key or text XML cannot carry, if any."""
    if isinstance(value, str):
        return path if _NOT_IN_XML.search(value) else None
    if isinstance(value, Mapping):
        items: list[tuple[str | int, object]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return None
    for key, item in items:
        place = join(path, key)
        if isinstance(key, str) and _NOT_IN_XML.search(key):
            return place
        found = _first_not_in_xml(item, place)
        if found is not None:
            return found
    return None


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as error:
        raise InvalidInput(
            f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except ValueError as error:
        raise InvalidInput(f"not valid JSON: {number_too_long(error) or error}") from None
    except RecursionError:
        raise InvalidInput(f"not valid JSON: {nested_too_deeply()}") from None


def _line_and_column(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)  # rfind: -1 on the first line
    return f" at line {line} column {column}"


def _load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except yaml.reader.ReaderError as error:  # a character YAML does not allow, anywhere
        where = _line_and_column(text, error.position)
        code = error.character if isinstance(error.character, int) else ord(error.character)
        raise InvalidInput(
            f"not valid YAML: character U+{code:04X} is not allowed{where}"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise InvalidInput(f"not valid YAML: {problem}{where}") from None
    except ValueError as error:  # a value the constructors refuse: a huge integer, a bad date
        raise InvalidInput(f"not valid YAML: {number_too_long(error) or error}") from None
    except RecursionError:
        raise InvalidInput(f"not valid YAML: {nested_too_deeply()}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key written twice in one mapping is an error (as in JSON,
    ``unique_keys``): yaml would keep the last value and drop the other without a
    word.  Checked as each mapping is read, before merges (``<<: *anchor``) bring in
    keys that the mapping may then override."""

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:  # str | None, in truth
        node: yaml.MappingNode = super().compose_mapping_node(anchor)
        seen: set[tuple[str, str]] = set()
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _YAML_MERGE:
                continue
            if (key.tag, key.value) in seen:
                raise yaml.composer.ComposerError(
                    problem=f"the key {key.value!r} appears twice in one mapping",
                    problem_mark=key.start_mark,
                )
            seen.add((key.tag, key.value))
        return node

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is None:
            return None
        repeated = _expanded_size(node, {}) - _distinct_nodes(node)
        if repeated > MAX_ALIAS_VALUES:
            raise yaml.composer.ComposerError(
                problem=f"its aliases repeat more than {MAX_ALIAS_VALUES:,} values"
                " (a document this large is written out, not made of aliases)",
                problem_mark=node.start_mark,
            )
        return node


# An alias shares its anchor's node, but everything after the loader (the model,
# the store, an export) sees the expanded values: a few lines of nested aliases
# would make billions of them.  Anchors that spare repeating a block stay usable.
MAX_ALIAS_VALUES = 100_000


def _node_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values ``node`` is once its aliases are expanded, each shared node
    counted once per place it stands (memoised: the node graph itself stays small).
    A node that contains itself counts once there: its depth is refused later."""
    key = id(node)
    if key not in sizes:
        sizes[key] = 1  # while its children are counted: a cycle back to it
        sizes[key] = 1 + sum(_expanded_size(child, sizes) for child in _node_children(node))
    return sizes[key]


def _distinct_nodes(node: yaml.Node) -> int:
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) not in seen:
            seen.add(id(current))
            stack.extend(_node_children(current))
    return len(seen)


_YAML_MERGE = "tag:yaml.org,2002:merge"

# A plain scalar is text, as every value in the XML is, and the model gives it its
# type: YAML 1.1 would turn a parameter's 0755 into 493, 12:30 into 750, 1.10 into
# 1.1 and no into false, and the agent would get a value nobody wrote.  Nulls and
# merges keep their meaning; an explicit tag (!!int) still says what it says.
_YAML_TYPED = {f"tag:yaml.org,2002:{kind}" for kind in ("bool", "int", "float", "timestamp")}
_UniqueKeyLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in _YAML_TYPED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_xml(text: str) -> dict[str, Any]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        line, column = error.position
        raise InvalidInput(
            f"not valid XML: {_expat_message(error)} at line {line} column {column + 1}"
        ) from None
    if root.tag != "deployable":
        raise InvalidInput(f"not a deployable document: the root element is <{root.tag}>")
    _check_xml_names(root)
    return _dict_deployable(root)


_DECODERS = {"json": _load_json, "yaml": _load_yaml, "xml": _load_xml}


def _expat_message(error: ET.ParseError) -> str:
    return str(error).split(":")[0]


# ---------------------------------------------------------------------------
# XML -> canonical dict

# What each element may hold.  JSON and YAML refuse a field they do not know; in
# XML a misspelt attribute or element (or the original's configure_executable,
# which nothing here carries out) would be read past without a word.
_RESOURCE_ATTRS = (
    frozenset(("name", "class", "provider", "type", "monitor_interval"))
    | {"escalation_failures", "escalation_period"}
    | {f"{op}_timeout" for op in OPERATIONS}
)
_XML_SHAPES: dict[str, tuple[frozenset[str], dict[str, str]]] = {
    # kind: (its attributes, {child element: the kind of its children})
    "deployable": (
        frozenset(("name", "uuid", "infrastructure", "monitor", "username"))
        | {"escalation_failures", "escalation_period"},
        {
            "settings": "setting",
            "heartbeat": "",
            "assemblies": "assembly",
            "services": "service",
            "colocations": "colocation",
            "constraints": "constraint",
        },
    ),
    "assembly": (
        frozenset(("name", "uuid", "image", "escalation_failures", "escalation_period")),
        {"services": "resource"},
    ),
    "resource": (_RESOURCE_ATTRS, {"parameters": "", "paramaters": ""}),
    "service": (
        _RESOURCE_ATTRS | {"stickiness", "migration_threshold", "failure_timeout"},
        {"parameters": "", "paramaters": "", "locations": ""},
    ),
}
# The tag each kind is written with, where it is not the kind's own name.
_XML_TAGS = {"resource": "service", "constraint": "service_dependancy"}
_XML_TAG_SPELLINGS = {"service_dependancy": ("service_dependancy", "service_dependency")}


def _check_xml_names(root: ET.Element) -> None:
    """InvalidInput naming every attribute and element of the deployable, its
    assemblies, resources and services that is not one this schema has."""
    problems = Problems()
    _check_xml_element(root, "deployable", "", problems)
    problems.raise_if_any()


def _check_xml_element(element: ET.Element, kind: str, path: str, problems: Problems) -> None:
    attrs, children = _XML_SHAPES[kind]
    for attr in element.attrib:
        if attr not in attrs:
            problems.add(path, f"unknown attribute {attr!r} of <{element.tag}>")
    for child in element:
        if child.tag not in children:
            problems.add(path, f"unknown element <{child.tag}> in <{element.tag}>")
            continue
        _check_xml_items(child, children[child.tag], join(path, _field(child.tag, kind)), problems)


def _check_xml_items(holder: ET.Element, kind: str, path: str, problems: Problems) -> None:
    """The elements a holder such as <assemblies> lists, each of the one kind."""
    if not kind:  # a holder whose content the model itself checks
        return
    tag = _XML_TAGS.get(kind, kind)
    for i, item in enumerate(holder):
        if item.tag not in _XML_TAG_SPELLINGS.get(tag, (tag,)):
            problems.add(path, f"unknown element <{item.tag}> in <{holder.tag}> (expected <{tag}>)")
        elif kind in _XML_SHAPES:
            _check_xml_element(item, kind, join(path, i), problems)


def _field(tag: str, kind: str) -> str:
    """The document's name for a holder: an assembly's <services> are its resources."""
    return "resources" if (kind, tag) == ("assembly", "services") else tag


def _dict_deployable(root: ET.Element) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": root.get("name")}
    _copy_attrs(root, doc, ("uuid", "infrastructure"))
    if doc.get("uuid") == doc["name"]:  # the original shell's stand-in ("TODO"): none
        del doc["uuid"]
    if root.get("monitor") is not None:  # the original's active|passive
        doc["monitoring"] = root.get("monitor")
    settings = {s.get("name", ""): s.get("value", "") for s in root.iterfind("settings/setting")}
    if settings:
        doc["settings"] = settings
    heartbeat = root.find("heartbeat")
    if heartbeat is not None:
        doc["heartbeat"] = dict(heartbeat.attrib)
    _copy_escalation(root, doc)
    assemblies = [_dict_assembly(a) for a in root.iterfind("assemblies/assembly")]
    doc["assemblies"] = assemblies
    doc["constraints"] = _dict_constraints(root, assemblies)
    services = [_dict_service(s) for s in root.iterfind("services/service")]
    colocations = [dict(c.attrib) for c in root.iterfind("colocations/colocation")]
    if services or colocations:
        doc["services"], doc["colocations"] = services, colocations
    return doc


def _dict_service(element: ET.Element) -> dict[str, Any]:
    """A deployable-level service: a resource with its candidate assemblies."""
    doc = _dict_resource(element)
    _copy_attrs(element, doc, ("stickiness", "migration_threshold", "failure_timeout"))
    doc["locations"] = [dict(loc.attrib) for loc in element.iterfind("locations/location")]
    return doc


def _dict_assembly(element: ET.Element) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": element.get("name")}
    _copy_attrs(element, doc, ("uuid", "image"))
    _copy_escalation(element, doc)
    doc["resources"] = [_dict_resource(s) for s in element.iterfind("services/service")]
    return doc


def _dict_resource(element: ET.Element) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": element.get("name")}
    _copy_attrs(element, doc, ("class", "provider", "type", "monitor_interval"))
    timeouts = {
        op: element.get(f"{op}_timeout")
        for op in ("start", "stop", "monitor")
        if element.get(f"{op}_timeout") is not None
    }
    if timeouts:
        doc["timeouts"] = timeouts
    doc["parameters"] = _dict_parameters(element)
    _copy_escalation(element, doc)
    return doc


def _dict_parameters(element: ET.Element) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for param in element.iterfind("parameters/parameter"):
        name = param.get("name", "")
        reference = param.find("reference")
        if reference is not None:
            params[name] = {"ref": f"{reference.get('assembly')}:{reference.get('parameter')}"}
        else:
            value = param.find("value")
            params[name] = (value.text or "") if value is not None else param.get("value", "")
    # pcloudsh 0.6 wrote <paramaters><paramater name value/>: read them too.
    for param in element.iterfind("paramaters/paramater"):
        params[param.get("name", "")] = param.get("value", "")
    return params


def _dict_constraints(root: ET.Element, assemblies: list[dict[str, Any]]) -> list[dict[str, str]]:
    ids = {
        f"rsc_{a['name']}_{r['name']}": f"{a['name']}/{r['name']}"
        for a in assemblies
        for r in a["resources"]
    }
    constraints = []
    for tag in ("service_dependancy", "service_dependency"):
        for element in root.iterfind(f"constraints/{tag}"):
            constraints.append(
                {end: _resource_path(element.get(end, ""), ids) for end in ("first", "then")}
            )
    return constraints


def _resource_path(primitive_id: str, ids: Mapping[str, str]) -> str:
    """``rsc_ASSEMBLY_RESOURCE`` (or already ``ASSEMBLY/RESOURCE``) as ``ASSEMBLY/RESOURCE``."""
    return ids.get(primitive_id, primitive_id)


def _copy_attrs(element: ET.Element, doc: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = element.get(name)
        if value is not None:
            doc[name] = value


def _copy_escalation(element: ET.Element, doc: dict[str, Any]) -> None:
    failures = element.get("escalation_failures")
    period = element.get("escalation_period")
    if failures is not None or period is not None:
        doc["escalation"] = {"failures": failures, "period": period}


# ---------------------------------------------------------------------------
# canonical dict -> XML


def _xml_deployable(doc: Mapping[str, Any]) -> ET.Element:
    root = ET.Element("deployable", _attrs(doc, ("name", "uuid", "infrastructure")))
    root.set("monitor", str(doc.get("monitoring", "active")))
    root.set("username", "root")
    _set_escalation(root, doc)
    settings = doc.get("settings") or {}
    if settings:
        holder = ET.SubElement(root, "settings")
        for key, value in settings.items():
            ET.SubElement(holder, "setting", {"name": str(key), "value": str(value)})
    if "heartbeat" in doc:
        ET.SubElement(root, "heartbeat", {k: str(v) for k, v in doc["heartbeat"].items()})
    assemblies = ET.SubElement(root, "assemblies")
    for assembly in doc.get("assemblies", []):
        _xml_assembly(assemblies, assembly)
    _xml_services(root, doc)
    constraints = ET.SubElement(root, "constraints")
    for i, constraint in enumerate(doc.get("constraints", [])):
        attrs = {"id": f"order_{i}"}
        attrs |= {end: _primitive_id(constraint[end]) for end in ("first", "then")}
        ET.SubElement(constraints, "service_dependancy", attrs)
    return root


def _xml_assembly(parent: ET.Element, assembly: Mapping[str, Any]) -> None:
    element = ET.SubElement(parent, "assembly", _attrs(assembly, ("name", "uuid", "image")))
    _set_escalation(element, assembly)
    services = ET.SubElement(element, "services")
    for resource in assembly.get("resources", []):
        _xml_resource(services, resource)


def _xml_resource(parent: ET.Element, resource: Mapping[str, Any]) -> None:
    names = ("name", "class", "provider", "type", "monitor_interval")
    element = ET.SubElement(parent, "service", _attrs(resource, names))
    for op, timeout in (resource.get("timeouts") or {}).items():
        element.set(f"{op}_timeout", str(timeout))
    _set_escalation(element, resource)
    params = ET.SubElement(element, "parameters")
    for name, value in (resource.get("parameters") or {}).items():
        param = ET.SubElement(params, "parameter", {"name": name})
        if isinstance(value, Mapping):
            assembly, _, attribute = str(value.get("ref", "")).partition(":")
            ET.SubElement(param, "reference", {"assembly": assembly, "parameter": attribute})
        else:
            ET.SubElement(param, "value").text = str(value)


def _xml_services(root: ET.Element, doc: Mapping[str, Any]) -> None:
    """Services (deployable-level, beside the assemblies) and their colocations."""
    if not doc.get("services") and not doc.get("colocations"):
        return
    services = ET.SubElement(root, "services")
    for service in doc.get("services", []):
        _xml_resource(services, service)
        element = services[-1]
        for key in ("stickiness", "migration_threshold", "failure_timeout"):
            if service.get(key) is not None:
                element.set(key, str(service[key]))
        locations = ET.SubElement(element, "locations")
        for location in service.get("locations", []):
            ET.SubElement(locations, "location", {k: str(v) for k, v in location.items()})
    colocations = ET.SubElement(root, "colocations")
    for colocation in doc.get("colocations", []):
        ET.SubElement(colocations, "colocation", {k: str(v) for k, v in colocation.items()})


def _primitive_id(path: str) -> str:
    assembly, sep, resource = path.partition("/")
    return f"rsc_{assembly}_{resource}" if sep else path  # a service keeps its name


def _attrs(doc: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    return {name: str(doc[name]) for name in names if doc.get(name) is not None}


def _set_escalation(element: ET.Element, doc: Mapping[str, Any]) -> None:
    escalation = doc.get("escalation")
    if escalation:  # off is INFINITY in the original schema
        element.set("escalation_failures", _escalation_word(escalation.get("failures")))
        element.set("escalation_period", _escalation_word(escalation.get("period")))


def _escalation_word(value: Any) -> str:
    return "INFINITY" if value in (None, 0, "INFINITY") else str(value)
