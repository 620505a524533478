"""A faster embedded moto for DynamoDB and DynamoDB Streams, with the same answers byte for byte.

Where moto 5.2.5's server time goes for the requests ``iii-stream local`` sends (cProfile of an
:class:`~iii_stream.infra.embedded_dynamodb.EmbeddedDynamoDB` serving the adapters; ``bench/moto_fast.py`` measures
it), and what this layer does about each cost:

- **Response serialization** (``moto.core.serialize``): moto walks botocore's output shape for every value, and for
  each member of each ``AttributeValue`` (10 members, each looked up through 6 alias providers) it builds a context
  object and tries several key spellings. That is ~90% of a 100-row Query, ~15% of an UpdateItem returning its
  attributes, and most of a GetRecords with images. Here an ``AttributeValue`` (or a map of them: ``AttributeMap``,
  ``Key``, ``M``) whose keys are only the ten type names and whose leaves have the types moto stores (``str``,
  ``bytes``, ``bool``, lists of them, nested maps/lists) is built directly, in the member order of the shape, with
  moto's own ``_base64`` for binary. Anything else (an empty attribute name, a ``None``, another type) goes through
  moto's generic code as before. Equivalence argument: for such a dict, every alias moto tries for a member is
  either the member's own name (found iff present) or a spelling that cannot be a key (``ss``,
  ``StringSetAttributeValue``, ...), strings are written as they are, booleans as they are, blobs through
  ``_base64``; the serializer has no response transformers for these handlers (checked at install).
- **UpdateExpression parsing**: moto parses the same expression twice per UpdateItem (``responses.update_item``
  for the names/values used, ``DynamoDBBackend.update_item`` for the executor). The parsed tree depends only on
  the text, and neither caller changes it: ``responses`` only reads it (``find_clauses``) and the backend hands
  it to ``UpdateExpressionValidator``, which deep-copies it before anything is resolved or executed. So the tree
  is parsed once per distinct text (an LRU of ``PARSE_CACHE_SIZE``) and shared; a text that fails to parse is
  not cached (its error is raised afresh each time). tests/integration/test_moto_fast.py checks that the cached
  trees are still equal to a fresh parse after the whole request sequence.
- **Validation traversals**: ``UpdateExpressionValidator`` runs 10 depth-first traversals, and at every node each
  one rebuilds its ``_processing_map()`` dict (bound methods) and the tuple of node classes from it. Those are
  the same for the life of a processor, so they are built once per processor instance.
- **Handler dispatch**: ``BaseResponse.call_action`` lists the handler class's functions with
  ``inspect.getmembers`` on every request (~10% of a GetItem). For the DynamoDB and Streams handler classes the
  list is computed once.

Pinned to moto ``MOTO_VERSION``: on another version :func:`install` changes nothing and logs one line. It is
process-global and idempotent; ``III_STREAM_MOTO_FAST=off`` in the environment turns it off (for comparisons).
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final

log = logging.getLogger("iii_stream.local.dynamodb")

MOTO_VERSION: Final = "5.2.5"
PARSE_CACHE_SIZE: Final = 512
ENV_SWITCH: Final = "III_STREAM_MOTO_FAST"

_FALLBACK: Final = object()  # not a value the fast path takes: moto's own code serializes it


class _Layer:
    """What :func:`install` changed, to undo it (tests; a process normally keeps it)."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self.parse_cache: OrderedDict[str, Any] = OrderedDict()

    def patch(self, owner: Any, name: str, value: Any) -> None:
        had = name in vars(owner)
        before = vars(owner).get(name)
        setattr(owner, name, value)

        def undo() -> None:
            if had:
                setattr(owner, name, before)
            else:
                delattr(owner, name)

        self._undo.append(undo)

    def set_item(self, mapping: dict[str, Any], key: str, value: Any) -> None:
        had, before = key in mapping, mapping.get(key)
        mapping[key] = value

        def undo() -> None:
            if had:
                mapping[key] = before
            else:
                mapping.pop(key, None)

        self._undo.append(undo)

    def uninstall(self) -> None:
        """Put moto back as it was."""
        global _installed
        while self._undo:
            self._undo.pop()()
        self.parse_cache.clear()
        _installed = None


_installed: _Layer | None = None


# --- serialization ----------------------------------------------------------------------------------------------
def _leaf(kind: type) -> Callable[[Any, Callable[[Any], str]], Any]:
    def convert(inner: Any, base64: Callable[[Any], str]) -> Any:
        return inner if type(inner) is kind else _FALLBACK

    return convert


def _binary(inner: Any, base64: Callable[[Any], str]) -> Any:
    return base64(inner) if type(inner) is bytes else _FALLBACK


def _set_of(kind: type, binary: bool) -> Callable[[Any, Callable[[Any], str]], Any]:
    def convert(inner: Any, base64: Callable[[Any], str]) -> Any:
        if type(inner) is not list or any(type(x) is not kind for x in inner):
            return _FALLBACK
        return [base64(x) for x in inner] if binary else list(inner)

    return convert


def _list(inner: Any, base64: Callable[[Any], str]) -> Any:
    if type(inner) is not list:
        return _FALLBACK
    listed = []
    for element in inner:
        done = _fast_value(element, base64)
        if done is _FALLBACK:
            return _FALLBACK
        listed.append(done)
    return listed


def _fast_value(value: Any, base64: Callable[[Any], str]) -> Any:
    """The serialized form of an AttributeValue dict as moto's JSON serializer builds it, or _FALLBACK."""
    if type(value) is not dict:
        return _FALLBACK
    out: dict[str, Any] = {}
    for name, convert in _CONVERTERS:  # the shape's member order
        if name in value:
            done = convert(value[name], base64)
            if done is _FALLBACK:
                return _FALLBACK
            out[name] = done
    if len(out) != len(value):  # a key that is not a type name: moto's aliases decide
        return _FALLBACK
    return out


def _fast_map(value: Any, base64: Callable[[Any], str]) -> Any:
    """A map of attribute name -> AttributeValue, or _FALLBACK (an empty name: moto writes it oddly)."""
    if type(value) is not dict:
        return _FALLBACK
    out: dict[str, Any] = {}
    for key, inner in value.items():
        if type(key) is not str or not key:
            return _FALLBACK
        done = _fast_value(inner, base64)
        if done is _FALLBACK:
            return _FALLBACK
        out[key] = done
    return out


# AttributeValue's members in the shape's order, each with what moto's serializer makes of a value of the type moto
# stores: a string as it is, a blob through _base64, a boolean as it is, lists and maps member by member.
_CONVERTERS: Final[tuple[tuple[str, Callable[[Any, Callable[[Any], str]], Any]], ...]] = (
    ("S", _leaf(str)),
    ("N", _leaf(str)),
    ("B", _binary),
    ("SS", _set_of(str, binary=False)),
    ("NS", _set_of(str, binary=False)),
    ("BS", _set_of(bytes, binary=True)),
    ("M", lambda inner, base64: _fast_map(inner, base64)),
    ("L", _list),
    ("NULL", _leaf(bool)),
    ("BOOL", _leaf(bool)),
)


def _fast_serializer(base: type) -> type:
    """``base`` (moto's JSON serializer) with the AttributeValue fast path."""

    class FastAttributeValueSerializer(base):  # type: ignore[misc]
        def _serialize_type_structure(self, serialized: Any, value: Any, shape: Any, key: str) -> None:
            if key and shape.name == "AttributeValue":
                done = _fast_value(value, self._base64)
                if done is not _FALLBACK:
                    serialized[self.get_serialized_name(shape, key)] = done
                    return
            super()._serialize_type_structure(serialized, value, shape, key)

        def _serialize_type_map(self, serialized: Any, value: Any, shape: Any, key: str) -> None:
            if shape.value.name == "AttributeValue" and shape.value.type_name == "structure":
                done = _fast_map(value, self._base64)
                if done is not _FALLBACK:
                    serialized[self.get_serialized_name(shape, key)] = done
                    return
            super()._serialize_type_map(serialized, value, shape, key)

    return FastAttributeValueSerializer


# --- the layer ----------------------------------------------------------------------------------------------------
def _cached_make(layer: _Layer, original: Any, parser: type) -> Any:
    def make(cls: type, expression_str: Any) -> Any:
        if cls is not parser or type(expression_str) is not str:
            return original.__func__(cls, expression_str)
        cache = layer.parse_cache
        tree = cache.get(expression_str)
        if tree is None:
            tree = original.__func__(cls, expression_str)  # raises for a bad text: nothing cached
            cache[expression_str] = tree
            if len(cache) > PARSE_CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(expression_str)
        return tree

    return classmethod(functools.wraps(original.__func__)(make))


def _moto() -> Any:
    """The moto modules and classes the layer patches (moto's parsing modules are untyped: Any)."""
    module = importlib.import_module
    return types.SimpleNamespace(
        core_responses=module("moto.core.responses"),
        serialize=module("moto.core.serialize"),
        method_names_from_class=module("moto.core.utils").method_names_from_class,
        DepthFirstTraverser=module("moto.dynamodb.parsing.ast_nodes").DepthFirstTraverser,
        UpdateExpressionParser=module("moto.dynamodb.parsing.expressions").UpdateExpressionParser,
        handlers=(
            module("moto.dynamodb.responses").DynamoHandler,
            module("moto.dynamodbstreams.responses").DynamoDBStreamsHandler,
        ),
    )


def _check_layout(m: Any) -> None:
    """Raise if moto's internals are not as the layer needs them."""

    for handler in m.handlers:
        if getattr(handler, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None):
            raise RuntimeError(f"{handler.__name__} has response transformers")
    if m.core_responses.method_names_from_class is not m.method_names_from_class:
        raise RuntimeError("moto.core.responses.method_names_from_class is already replaced")
    if {"dynamodb", "dynamodbstreams"} & set(m.serialize.SERVICE_SPECIFIC_SERIALIZERS):
        raise RuntimeError("moto already has a DynamoDB-specific serializer")
    for name in ("_processing_map", "nodes_to_be_processed", "process", "traverse_node_recursively"):
        if not callable(getattr(m.DepthFirstTraverser, name, None)):
            raise RuntimeError(f"DepthFirstTraverser.{name}")
    if not isinstance(vars(m.UpdateExpressionParser).get("make"), classmethod):
        raise RuntimeError("UpdateExpressionParser.make is not its own classmethod")


def _patch_traversers(layer: _Layer, traverser: type) -> None:
    """Each processor's ``_processing_map()`` (and the node classes from it) built once, not at every node."""

    def nodes_to_be_processed(self: Any) -> tuple[type, ...]:
        kinds: tuple[type, ...] | None = self.__dict__.get("_iii_kinds_cache")
        if kinds is None:
            kinds = self.__dict__["_iii_kinds_cache"] = tuple(self._iii_map())
        return kinds

    def processing_map(self: Any) -> dict[type, Callable[[Any], Any]]:
        mapping: dict[type, Callable[[Any], Any]] | None = self.__dict__.get("_iii_map_cache")
        if mapping is None:
            mapping = self.__dict__["_iii_map_cache"] = type(self)._processing_map(self)
        return mapping

    def process(self: Any, node: Any) -> Any:  # as moto's: the first class that matches, in the map's order
        for class_key, processor in self._iii_map().items():
            if isinstance(node, class_key):
                return processor(node)
        return None

    layer.patch(traverser, "_iii_map", processing_map)
    layer.patch(traverser, "nodes_to_be_processed", nodes_to_be_processed)
    layer.patch(traverser, "process", process)


def _install_layer() -> _Layer:
    m = _moto()
    _check_layout(m)
    layer = _Layer()
    try:
        fast = _fast_serializer(m.serialize.SERIALIZERS["json"])
        for service in ("dynamodb", "dynamodbstreams"):
            layer.set_item(m.serialize.SERVICE_SPECIFIC_SERIALIZERS, service, {"json": fast})
        parser = m.UpdateExpressionParser
        layer.patch(parser, "make", _cached_make(layer, vars(parser)["make"], parser))
        _patch_traversers(layer, m.DepthFirstTraverser)
        listed: dict[type, list[str]] = {}

        def cached_method_names(clazz: Any) -> list[str]:
            if clazz in m.handlers:
                names = listed.get(clazz)
                if names is None:
                    names = listed[clazz] = m.method_names_from_class(clazz)
                return list(names)
            result: list[str] = m.method_names_from_class(clazz)
            return result

        layer.patch(m.core_responses, "method_names_from_class", cached_method_names)
    except BaseException:
        layer.uninstall()
        raise
    return layer


def install() -> _Layer | None:
    """Make this process's moto answer DynamoDB and DynamoDB Streams requests faster, with the same bytes.

    Idempotent; returns the installed layer (``.uninstall()`` undoes it), or None when it is off: another moto
    version than ``MOTO_VERSION``, ``III_STREAM_MOTO_FAST=off``, or a moto whose internals are not as expected
    (one log line says which)."""
    global _installed
    if _installed is not None:
        return _installed
    if os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "false", "no"):
        log.info("moto fast layer off (%s=%s)", ENV_SWITCH, os.environ[ENV_SWITCH])
        return None
    import moto

    if moto.__version__ != MOTO_VERSION:
        log.warning("moto fast layer off: written for moto %s, found %s", MOTO_VERSION, moto.__version__)
        return None
    try:
        _installed = _install_layer()
    except Exception as error:  # noqa: BLE001 - any surprise in moto's internals: stay on plain moto
        log.warning("moto fast layer off: moto %s is not laid out as expected (%s)", moto.__version__, error)
        return None
    return _installed
