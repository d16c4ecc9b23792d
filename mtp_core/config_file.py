"""Reading a config file into plain data, bounded and strict: YAML and JSON.

A task or study config is user input, so every way it can be wrong ends in one
:class:`~mtp_core.errors.ConfigError` line naming the file, the place and what is allowed; never
a traceback, a hang or a memory blow-up:

* only a regular file is read (a FIFO would block forever, a device never ends), at most
  :data:`MAX_CONFIG_BYTES`; the text must be UTF-8 (a byte-order mark is accepted);
* YAML goes through a bounded composer: at most :data:`MAX_CONFIG_NODES` nodes, where an alias
  counts its anchor's nodes again at every use (a "billion laughs" file of a few hundred bytes
  expands to billions of values once anything walks it); no alias inside the anchor it names
  (a structure that contains itself); at most :data:`MAX_CONFIG_DEPTH` levels of nesting;
  only plain-data tags (no ``!!python/...``, no timestamps, sets or binary); string keys; each
  key once per mapping (a merge ``<<: *base`` is not a duplicate: an explicit key next to it
  overrides the merged one, as YAML says);
* JSON gets the same limits and the same duplicate-key check.

What comes back holds only dicts with string keys, lists, strings, ints, floats, bools and None.
``--set key=value`` values go through the same YAML composer (:func:`parse_override_value`).
"""

from __future__ import annotations

import codecs
import enum
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, CollectionStartEvent, NodeEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from mtp_core.errors import ConfigError

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_CONFIG_DEPTH",
    "MAX_CONFIG_NODES",
    "MAX_NUMBER_CHARS",
    "ConfigFormat",
    "config_format",
    "parse_json",
    "parse_override_value",
    "parse_yaml",
    "read_config_file",
]

MAX_CONFIG_BYTES = 10 * 1024 * 1024
"""Largest config file read (a task config is a few hundred bytes)."""
MAX_CONFIG_NODES = 100_000
"""Most nodes (keys, values, list items) a config may expand to, aliases expanded."""
MAX_CONFIG_DEPTH = 64
"""Deepest nesting of mappings and lists (a task config nests about five levels)."""
MAX_NUMBER_CHARS = 100
"""Longest integer literal (Python refuses to convert more than 4300 digits at all)."""

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_SEQ, _MAP, _MERGE, _TIMESTAMP = (_TAG + t for t in ("seq", "map", "merge", "timestamp"))
_SCALAR_TAGS = {_STR, _INT, _FLOAT, _BOOL, _NULL}
_PLAIN = ("config files hold plain data only: mappings, lists, strings, numbers, booleans and "
          "null")


class ConfigFormat(enum.StrEnum):
    """The syntax of a config file, by its extension."""

    YAML = "yaml"
    JSON = "json"


_EXTENSIONS = {".yaml": ConfigFormat.YAML, ".yml": ConfigFormat.YAML, ".json": ConfigFormat.JSON}


class _Refused(Exception):
    """A config the reader will not expand (a bound, recursion, a duplicate key); the message
    says where, without the file name."""


class _NotPlain(_Refused):
    """A value that is not plain data (a tag, a timestamp, a non-string key): an error in a
    file, the literal string in a ``--set`` value."""


def config_format(path: str | Path, *, what: str = "task config file") -> ConfigFormat:
    """YAML for ``.yaml``/``.yml``, JSON for ``.json``; ConfigError for anything else."""
    p = Path(path)
    fmt = _EXTENSIONS.get(p.suffix.lower())
    if fmt is None:
        raise ConfigError(f"{what} {str(p)!r}: unknown extension {p.suffix!r}; allowed: "
                          ".yaml, .yml, .json")
    return fmt


def read_config_file(path: str | Path, *, what: str = "task config file",
                     max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """The plain data of a YAML or JSON config file (see the module docstring for the checks).

    Raises ConfigError naming the file (``what`` and the path) for a missing, unreadable,
    non-regular, oversized, non-UTF-8, empty, malformed or unbounded file.
    """
    p = Path(path)
    origin = f"{what} {str(p)!r}"
    st = _stat(p, origin)
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{origin} is a directory, not a config file; allowed: a .yaml, .yml "
                          "or .json file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{origin} is not a regular file (it is {_file_kind(st.st_mode)}); "
                          "allowed: a .yaml, .yml or .json file")
    fmt = config_format(p, what=what)
    if st.st_size > max_bytes:
        raise ConfigError(f"{origin} is too large: {st.st_size:,} bytes; the limit is "
                          f"{_size(max_bytes)}")
    text = _decode(_read_bounded(p, origin, max_bytes), origin)
    if not text.strip():
        raise ConfigError(f"{origin} is empty")
    raw = parse_json(text, origin) if fmt is ConfigFormat.JSON else parse_yaml(text, origin)
    if raw is None:
        raise ConfigError(f"{origin} is empty (it holds only comments or null)")
    return raw


def parse_yaml(text: str, origin: str) -> Any:
    """Plain data from YAML text, bounded; ConfigError prefixed with ``origin``."""
    try:
        return _load_yaml(text)
    except _Refused as err:
        raise ConfigError(f"{origin}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{origin} is not valid YAML: {_yaml_problem(err, text)}") from None


def parse_json(text: str, origin: str) -> Any:
    """Plain data from JSON text, bounded, duplicate keys refused; ConfigError prefixed with
    ``origin``. NaN and Infinity literals are read as floats: the config models refuse them
    with the field's name and range."""
    duplicates: list[tuple[dict[str, Any], str]] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj and not any(o is obj for o, _ in duplicates):
                duplicates.append((obj, key))
            obj[key] = value
        return obj

    try:
        data = json.loads(text, object_pairs_hook=pairs_hook, parse_int=_json_int)
        _check_json_tree(data, duplicates)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{origin} is not valid JSON: {err}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: nested too deeply; the limit is {MAX_CONFIG_DEPTH} "
                          "levels") from None
    except _Refused as err:
        raise ConfigError(f"{origin}: {err}") from None
    return data


def parse_override_value(text: str, where: str) -> Any:
    """The value of a ``--set key=value`` override, read as YAML with the file's bounds.

    What is not plain YAML data (a syntax error, a timestamp, a tag) is the literal string, as
    a shell user means ``--set name=2024-01-01``; an unbounded value (an alias bomb, a
    recursive anchor, too deep) or a duplicate key is a ConfigError naming ``where``.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ConfigError(f"{where}: not valid utf-8 text at character {err.start}") from None
    try:
        return _load_yaml(text)
    except _NotPlain:
        return text
    except _Refused as err:
        raise ConfigError(f"{where}: {err}") from None
    except yaml.YAMLError:
        return text


# ---------------------------------------------------------------------------------------------
# Reading the bytes


def _stat(p: Path, origin: str) -> os.stat_result:
    try:
        return p.stat()
    except FileNotFoundError:
        broken = " (a broken symbolic link)" if p.is_symlink() else ""
        raise ConfigError(f"{origin} does not exist{broken}") from None
    except OSError as err:
        raise ConfigError(f"{origin} cannot be read: {err.strerror or err}") from None
    except ValueError as err:  # an embedded NUL byte
        raise ConfigError(f"{origin} is not a valid path: {err}") from None


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / 2**20:g} MiB)" if n >= 2**20 else f"{n:,} bytes"


def _read_bounded(p: Path, origin: str, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of a regular file; O_NONBLOCK so that a FIFO swapped in after the
    stat cannot block the open, and the fstat check refuses it."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(p, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise ConfigError(f"{origin} cannot be read: {err.strerror or err}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{origin} is not a regular file (it is "
                              f"{_file_kind(st.st_mode)}); allowed: a .yaml, .yml or .json file")
        chunks: list[bytes] = []
        total = 0
        while True:  # a file may grow, or report size 0 (/proc): the bound is on what is read
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ConfigError(f"{origin} is too large: more than {max_bytes:,} bytes; the "
                                  f"limit is {_size(max_bytes)}")
    except OSError as err:
        raise ConfigError(f"{origin} cannot be read: {err.strerror or err}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _decode(data: bytes, origin: str) -> str:
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        hint = ""
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            hint = " (it starts with a UTF-16 byte-order mark)"
        raise ConfigError(
            f"{origin} cannot be read: it is not utf-8 text{hint}: byte 0x{data[offset]:02x} "
            f"at offset {offset} (line {line}, column {column}); save it as utf-8") from None


# ---------------------------------------------------------------------------------------------
# YAML


class _BoundedComposer(Composer, SafeConstructor, Resolver):
    """PyYAML's composer with bounds and checks applied while the node graph is built.

    Every node composed counts once and every alias counts its anchor's whole size again, so
    the count is the size of the fully expanded document: composing stops at the limit, long
    before anything could walk the expansion. Construction (SafeConstructor) then only ever
    sees a bounded, acyclic graph of plain-data nodes.
    """

    peek_event: Callable[[], Any]  # from the parser the loader is built on

    def __init__(self) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._expanded = 0
        self._anchor_sizes: dict[str, int] = {}
        self._open_anchors: list[str] = []
        self._path: list[str | int] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            alias = str(event.anchor)
            if alias in self._open_anchors:
                raise _Refused(
                    f"the alias *{alias}{_at(event.start_mark)} is inside the anchor &{alias} "
                    "it refers to; a config cannot contain itself (recursive structures are "
                    "not allowed)")
            node = super().compose_node(parent, index)
            self._grow(self._anchor_sizes.get(alias, 1), event.start_mark)
            return node
        if len(self._path) >= MAX_CONFIG_DEPTH:
            raise _Refused(f"nested more than {MAX_CONFIG_DEPTH} levels deep"
                           f"{_at(event.start_mark)}; the limit is {MAX_CONFIG_DEPTH} levels")
        assert isinstance(event, NodeEvent)  # the composer asks for a node only before one
        anchor = event.anchor
        explicit_tag = getattr(event, "tag", None) not in (None, "!")
        opens = anchor is not None and isinstance(event, CollectionStartEvent)
        start = self._expanded
        self._grow(1, event.start_mark)
        self._path.append(_path_item(parent, index))
        if opens:
            self._open_anchors.append(str(anchor))
        try:
            node = super().compose_node(parent, index)
            if node is not None:
                self._check_node(node, is_key=isinstance(parent, MappingNode) and index is None,
                                 explicit_tag=explicit_tag)
        finally:
            if opens:
                self._open_anchors.pop()
            self._path.pop()
        if anchor is not None:
            self._anchor_sizes[str(anchor)] = self._expanded - start
        return node

    def _grow(self, n: int, mark: Any) -> None:
        self._expanded += n
        if self._expanded > MAX_CONFIG_NODES:
            raise _Refused(
                f"too large: it expands to more than {MAX_CONFIG_NODES:,} nodes{_at(mark)} "
                "(keys, values and list items; an alias counts its anchor's nodes again at "
                f"every use); the limit is {MAX_CONFIG_NODES:,} nodes")

    def _where(self, key: str | None = None, *, up: int = 0) -> str:
        """``path: `` of the node being checked (``up`` levels higher) plus ``key``; empty at
        the top level."""
        here = self._path[1:len(self._path) - up]
        parts = [*here, *([key] if key is not None else [])]
        return f"{_dotted(parts)}: " if parts else ""

    def _check_node(self, node: Node, *, is_key: bool, explicit_tag: bool) -> None:
        line = _at(node.start_mark)
        if is_key:
            if not isinstance(node, ScalarNode):
                raise _NotPlain(f"{self._where(up=1)}a key{line} is a "
                                f"{'list' if isinstance(node, SequenceNode) else 'mapping'}; "
                                "keys must be strings")
            if node.tag not in (_STR, _MERGE):
                raise _NotPlain(f"{self._where(up=1)}the key {node.value!r}{line} is read as a "
                                f"YAML {_tag_name(node.tag)}; keys must be strings (quote it)")
            return
        if isinstance(node, ScalarNode):
            self._check_scalar(node, explicit_tag)
        elif isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                raise _NotPlain(f"{self._where()}the tag {_short(node.tag)}{line} is not "
                                f"allowed; {_PLAIN}")
        elif isinstance(node, MappingNode):
            if node.tag != _MAP:
                raise _NotPlain(f"{self._where()}the tag {_short(node.tag)}{line} is not "
                                f"allowed; {_PLAIN}")
            self._check_keys(node)

    def _check_scalar(self, node: ScalarNode, explicit_tag: bool) -> None:
        where, line = self._where(), _at(node.start_mark)  # where: "path: " or ""
        value = str(node.value)
        if node.tag == _TIMESTAMP:
            raise _NotPlain(f"{where}{_clip(value)}{line} is read as a YAML timestamp; "
                            f"{_PLAIN} (quote it to make it a string)")
        if node.tag not in _SCALAR_TAGS:
            raise _NotPlain(f"{where}the tag {_short(node.tag)}{line} is not allowed; "
                            f"{_PLAIN}")
        if explicit_tag and node.tag != _STR:
            implicit = self.resolve(ScalarNode, value, (True, False))
            if implicit != node.tag and not (node.tag == _FLOAT and implicit == _INT):
                raise _NotPlain(f"{where}{_clip(value)}{line} is not a valid "
                                f"{_short(node.tag)}")
        if node.tag == _INT and len(value) > MAX_NUMBER_CHARS:
            raise _Refused(f"{where}an integer of {len(value):,} characters{line} is too "
                           f"long; the limit is {MAX_NUMBER_CHARS} characters")

    def _check_keys(self, node: MappingNode) -> None:
        seen: dict[str, Any] = {}
        merges: list[Any] = []
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                merges.append(key_node.start_mark)
                if len(merges) > 1:
                    raise _Refused(
                        f"{self._where('<<')}the merge key '<<' is given twice "
                        f"({_two_places(merges[0], merges[1])}); merge several mappings with "
                        "one key: <<: [*a, *b]")
                continue
            key = str(key_node.value)
            if key in seen:
                raise _Refused(
                    f"{self._where(key).removesuffix(': ')} is given twice "
                    f"({_two_places(seen[key], key_node.start_mark)}); a key may appear only "
                    "once in a mapping")
            seen[key] = key_node.start_mark


class _PyLoader(_BoundedComposer, yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
    """The bounded composer over PyYAML's pure-Python parser."""

    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _BoundedComposer.__init__(self)


def _c_loader() -> Callable[[str], _BoundedComposer] | None:
    """The bounded composer over libyaml's C parser (tens of times faster at scanning), when
    PyYAML was built with it. Only the events come from C: composing stays in Python so the
    bounds apply while nodes are built (libyaml's own composer would build them all first)."""
    try:
        from yaml._yaml import CParser
    except ImportError:
        return None

    class _CLoader(_BoundedComposer, CParser):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _BoundedComposer.__init__(self)

    return _CLoader


_LOADER: Callable[[str], _BoundedComposer] = _c_loader() or _PyLoader


def _load_yaml(text: str) -> Any:
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return loader.construct_document(node)
        except (ValueError, TypeError, KeyError, OverflowError) as err:
            # a value the composer's checks let through but the constructor cannot convert
            raise _NotPlain(f"a value cannot be read: {err!r}") from None
    finally:
        dispose = getattr(loader, "dispose", None)
        if callable(dispose):
            dispose()


def _yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """One line: what is wrong and where (PyYAML's own text spans lines with a snippet)."""
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        column = err.position - (text.rfind("\n", 0, err.position) + 1) + 1
        char = err.character if isinstance(err.character, int) else ord(str(err.character)[0])
        out = (f"unacceptable character #x{char:04x} at line {line}, column {column}: "
               f"{err.reason}")
    elif isinstance(err, yaml.MarkedYAMLError):
        out = (err.problem or err.context or "invalid YAML") + _at(err.problem_mark)
        if err.problem and err.context:  # PyYAML's order: "while parsing X at ...: problem"
            out = f"{err.context}{_at(err.context_mark)}: {out}"
    else:
        out = str(err)
    return " ".join(out.split())


def _at(mark: Any) -> str:
    if mark is None:
        return ""
    return f" at line {mark.line + 1}, column {mark.column + 1}"


def _two_places(first: Any, second: Any) -> str:
    if first.line == second.line:
        return f"line {first.line + 1}, columns {first.column + 1} and {second.column + 1}"
    return f"lines {first.line + 1} and {second.line + 1}"


def _path_item(parent: Node | None, index: Any) -> str | int:
    if isinstance(parent, SequenceNode) and isinstance(index, int):
        return index
    if isinstance(index, ScalarNode):
        return str(index.value)
    return "<key>" if isinstance(parent, MappingNode) else "?"


def _dotted(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<root>"


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _tag_name(tag: str) -> str:
    return tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _clip(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


# ---------------------------------------------------------------------------------------------
# JSON


def _json_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"an integer of {len(text):,} digits is too long; the limit is "
                       f"{MAX_NUMBER_CHARS} characters")
    return int(text)


def _check_json_tree(data: Any, duplicates: list[tuple[dict[str, Any], str]]) -> None:
    """Count nodes and depth, and name the path of the first duplicate key (JSON has no
    aliases: the data is a tree, walked without recursion)."""
    dup_keys = {id(obj): key for obj, key in duplicates}
    count = 0
    stack: list[tuple[Any, list[str | int]]] = [(data, [])]
    while stack:
        value, path = stack.pop()
        count += 1 + (len(value) if isinstance(value, dict) else 0)
        if count > MAX_CONFIG_NODES:
            raise _Refused(f"too large: more than {MAX_CONFIG_NODES:,} nodes (keys, values and "
                           f"list items); the limit is {MAX_CONFIG_NODES:,} nodes")
        if len(path) > MAX_CONFIG_DEPTH:
            raise _Refused(f"nested more than {MAX_CONFIG_DEPTH} levels deep at "
                           f"{_dotted(path[:8])}...; the limit is {MAX_CONFIG_DEPTH} levels")
        if isinstance(value, dict):
            if id(value) in dup_keys:
                raise _Refused(f"{_dotted([*path, dup_keys[id(value)]])} is given twice; a key "
                               "may appear only once in an object")
            stack.extend((v, [*path, k]) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend((v, [*path, i]) for i, v in reversed(list(enumerate(value))))
    if duplicates:  # inside a value that was itself overwritten by a duplicate
        raise _Refused(f"the key {duplicates[0][1]!r} is given twice in one object; a key may "
                       "appear only once in an object")

