"""The Debian mirror this host's apt already uses.

JEOS builds fetch from the same mirror as the host (a site may only reach its
own mirror or proxy), read from ``/etc/apt/sources.list`` (one-line format)
and ``/etc/apt/sources.list.d/*.list`` / ``*.sources`` (deb822).  No mirror
host is ever written into the code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from foundation.errors import InvalidInput

APT_DIR = Path("/etc/apt")
SCHEMES = ("http://", "https://", "ftp://", "file:/")
POCKET_SUFFIXES = ("-security", "-updates", "-backports", "-proposed-updates")


@dataclass(frozen=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None


@dataclass(frozen=True)
class Mirror:
    uri: str
    keyring: Path | None = None  # the Signed-By keyring, when it is a file


def host_mirror(release: str, apt_dir: Path = APT_DIR) -> Mirror:
    """The mirror for ``release``: a source that lists it, else the host's main archive."""
    sources = list(read_apt_sources(apt_dir))
    chosen = choose_mirror(sources, release)
    if chosen is None:
        raise InvalidInput(
            f"no Debian mirror found in the host's apt sources ({apt_dir}/sources.list "
            "and sources.list.d): add a 'deb' source with the 'main' component"
        )
    return chosen


def choose_mirror(sources: Iterable[AptSource], release: str) -> Mirror | None:
    usable = [s for s in sources if "main" in s.components and s.uri.startswith(SCHEMES)]
    archives = [s for s in usable if any(not _is_pocket(suite) for suite in s.suites)]
    for candidates in ([s for s in archives if release in s.suites], archives):
        if candidates:
            return _mirror(candidates[0])
    return None


def read_apt_sources(apt_dir: Path = APT_DIR) -> Iterator[AptSource]:
    """Every enabled ``deb`` source, in the order apt reads them."""
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if path.is_file():
            yield from parse_one_line(_read(path))
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        yield from parse_deb822(_read(path))


def parse_one_line(text: str) -> Iterator[AptSource]:
    """``deb [opt=value ...] URI SUITE COMPONENT...`` lines."""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        options, rest = _split_options(line)
        words = rest.split()
        if len(words) >= 3 and words[0] == "deb":
            yield AptSource(
                uri=words[1],
                suites=(words[2],),
                components=tuple(words[3:]),
                signed_by=options.get("signed-by"),
            )


def parse_deb822(text: str) -> Iterator[AptSource]:
    """deb822 stanzas (``Types:``, ``URIs:``, ``Suites:``, ``Components:``...)."""
    for stanza in _stanzas(text):
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        for uri in stanza.get("uris", "").split():
            yield AptSource(
                uri=uri,
                suites=tuple(stanza.get("suites", "").split()),
                components=tuple(stanza.get("components", "").split()),
                signed_by=stanza.get("signed-by"),
            )


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
    return


_OPTIONS_RE = re.compile(r"^(deb(?:-src)?)\s+\[([^\]]*)\]\s*(.*)$")


def _split_options(line: str) -> tuple[dict[str, str], str]:
    match = _OPTIONS_RE.match(line)
    if not match:
        return {}, line
    options = dict(item.split("=", 1) for item in match.group(2).split() if "=" in item)
    return {k.lower(): v for k, v in options.items()}, f"{match.group(1)} {match.group(3)}"


def _is_pocket(suite: str) -> bool:
    return suite.endswith(POCKET_SUFFIXES) or "/" in suite


def _mirror(source: AptSource) -> Mirror:
    keyring = None
    if source.signed_by and source.signed_by.startswith("/") and "\n" not in source.signed_by:
        keyring = Path(source.signed_by)
    return Mirror(uri=source.uri, keyring=keyring if keyring and keyring.is_file() else None)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise InvalidInput(f"cannot read apt sources {path}: {exc.strerror}") from exc
