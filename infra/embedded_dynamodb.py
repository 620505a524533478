"""An embedded DynamoDB (with Streams) on loopback: moto's server, made safe for concurrent clients and bounded.

**One request at a time.** moto's backend is not thread-safe: it checks a ConditionExpression and then writes with
nothing in between to stop another request thread, reads the old item for ``ReturnValues`` before the write (so
a concurrent writer makes it stale), and iterates dicts that other requests change (``RuntimeError: dictionary
changed size during iteration``). Real DynamoDB runs each single-item operation atomically, so the dispatcher
serves every request (DynamoDB and DynamoDB Streams alike) under one lock: each one is atomic, and the stream
records (``OldImage``, ``NewImage``) chain without gaps or repeats.

**Bounded memory.** moto keeps every model object it ever made: each ``BaseModel`` subclass appends every instance
to its class's ``instances_tracked`` list (``moto.core.common_models.BaseModel.__new__``, for the dashboard's
``/moto-api/data.json``), so every ``Item`` version written, every ``StreamRecord`` and every ``ShardIterator`` stays
in memory (about 60 MB a minute under the soak's load). :func:`stop_moto_instance_tracking` empties those lists
for DynamoDB's and DynamoDB Streams' models (the dashboard then lists none of them; a ``/moto-api/reset`` turns the
tracking back on). Besides, moto keeps every stream record in its shard for ever (DynamoDB keeps them 24 hours) and
every shard iterator it ever handed out (one more per GetRecords call; DynamoDB's expire after 15 minutes). For the
requests this server serves, :class:`_StreamBookkeeping` therefore:

- trims a shard's records that every reader has read past. A reader is a chain of iterators (GetShardIterator,
  then each GetRecords' ``NextShardIterator``); its position is the iterator it holds and has not used yet. The
  records before the lowest such position over all readers of the shard are dropped. Sequence numbers do not
  change (moto numbers a record ``starting_sequence_number + its index``, so the start moves up with the trim).
  A used iterator counts as a position too while it may be reused (``ITERATOR_REUSE_SECONDS``): a reader that
  lost an answer and asks again with the same iterator gets the same records, as from DynamoDB.
- answers a read at a trimmed position from the oldest record kept (TRIM_HORIZON semantics), where DynamoDB would
  answer ``TrimmedDataAccessException``: a Lambda event source mapping that meets a trimmed position resumes at the
  trim horizon, and so does a local stream pump, without an error to handle.
- expires iterators as DynamoDB does, 15 minutes after they are handed out, and sooner once used: a used iterator
  can be reused (a retry) for ``ITERATOR_REUSE_SECONDS``, then answers ``ExpiredIteratorException``. An iterator
  handed out and never used (a reader that went away) holds records back until it expires.

This relies on moto internals, named here and checked at startup by :func:`check_moto_stream_layout` (a moto
upgrade that changes them fails loudly, not silently): ``moto.dynamodb.models.table.StreamShard.items`` (the list
of records), ``StreamShard.starting_sequence_number`` (the first one's number), ``StreamShard.get``,
``moto.dynamodbstreams.models.ShardIterator.sequence_number`` / ``.stream_shard``,
``DynamoDBStreamsBackend.shard_iterators`` (iterator ARN -> iterator) and ``BaseModel.instances_tracked``.
Written against moto 5.2.5.

**Snapshots.** ``iii-stream local`` keeps its tables across restarts (``infra/local/snapshots.py``): it reads every
item of a table (:func:`export_tables`) and puts items back (:func:`import_items`) straight on moto's backend, under
the lock. A snapshot is one point in time over all tables (one lock holding), and :func:`writes` counts the writes
so far (to snapshot only after a change). Restored items are not new changes: they are put with the table's stream
shard detached (``Table.stream_shard`` set to None around ``Table.put_item``), so they make no stream record, wake
no pump and count as no write. Relied on, and checked by :func:`check_moto_stream_layout` too: ``Table.put_item``
(adds a record only through ``Table.stream_shard``), ``Table.all_items`` and ``Item.to_json()["Attributes"]``
(DynamoDB JSON), ``dynamodb_backends[account][region].get_table``.
"""

from __future__ import annotations

import base64
import functools
import gc
import inspect
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import moto
from iii_stream.infra import moto_fast
from moto.core.common_models import BaseModel
from moto.core.exceptions import JsonRESTError
from moto.dynamodb.models import DynamoDBBackend, dynamodb_backends
from moto.dynamodb.models.table import StreamShard, Table
from moto.dynamodbstreams.models import DynamoDBStreamsBackend, ShardIterator
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

log = logging.getLogger("iii_stream.local.dynamodb")

MOTO_TESTED: Final = "5.2.5"
ITERATOR_LIFETIME_SECONDS: Final = 15 * 60.0  # as DynamoDB: a shard iterator expires 15 minutes after it is returned
ITERATOR_REUSE_SECONDS: Final = 30.0  # how long a used iterator can be used again (a retry)

_WRITE_OPERATIONS = ("put_item", "update_item", "delete_item", "transact_write_items", "batch_write_item")
# One lock: every request the embedded server serves, and every write to moto's DynamoDB backend in this process.
_lock = threading.RLock()
_serving = threading.local()  # .active: this thread serves a request of an EmbeddedDynamoDB (trimming applies)
_patched = False
_streams_patched = False
_write_listeners: list[Callable[[], None]] = []
_writes = 0  # write operations moto's DynamoDB backend has taken (under the lock): what a snapshot is up to


def on_write(listener: Callable[[], None]) -> None:
    """Call ``listener`` after every write to the embedded DynamoDB (the stream pumps wake on it)."""
    _write_listeners.append(listener)


def remove_write_listener(listener: Callable[[], None]) -> None:
    if listener in _write_listeners:
        _write_listeners.remove(listener)


def make_moto_writes_atomic() -> None:
    """Wrap moto's DynamoDB write operations in the lock, and tell the write listeners (idempotent).

    The embedded server holds the lock around whole requests anyway; this covers in-process callers too.
    """
    global _patched
    if _patched:
        return
    for name in _WRITE_OPERATIONS:
        original = getattr(DynamoDBBackend, name)

        @functools.wraps(original)
        def locked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            global _writes
            try:
                with _lock:
                    _writes += 1  # even a refused write: a snapshot too many is harmless, one too few is not
                    return __original(self, *args, **kwargs)
            finally:
                for listener in list(_write_listeners):
                    listener()

        setattr(DynamoDBBackend, name, locked)
    _patched = True


def writes() -> int:
    """How many write operations moto's DynamoDB backend has taken in this process (after
    :func:`make_moto_writes_atomic`): a snapshot taken at one count is current until the count moves."""
    with _lock:
        return _writes


# --- snapshots: the tables' items out and back in, without stream records -----------------------------------------
def _table(arn: str) -> Table:
    """The moto table of ``arn`` (``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME``, as DescribeTable gives it)."""
    _, _, _, region, account, resource = arn.split(":", 5)
    return dynamodb_backends[account][region].get_table(resource.split("/", 1)[1])


def _wire(value: Any) -> Any:
    """An exported attribute value as DynamoDB sends it: binary as base64 text (moto keeps nested ones as bytes)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {key: _wire(inner) for key, inner in value.items()}
    if isinstance(value, list):
        return [_wire(inner) for inner in value]
    return value


def export_tables(arns: Iterable[str]) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    """Every item of each table (by ARN), in DynamoDB JSON, at one point in time; and :func:`writes` at it."""
    with _lock:
        exported = {arn: [item.to_json()["Attributes"] for item in _table(arn).all_items()] for arn in arns}
        at = _writes
    # Item.to_json copies all but the immutable leaves: the rest needs no lock.
    return at, {arn: [_wire(item) for item in items] for arn, items in exported.items()}


def import_items(arn: str, items: Iterable[Mapping[str, Any]]) -> int:
    """Put ``items`` (DynamoDB JSON) into the table of ``arn`` as they are, validated as a PutItem; return how many.

    No stream record, no write listener, no write counted: restored items are not new changes. Raises what
    moto's PutItem raises for an invalid item (after putting the ones before it)."""
    table = _table(arn)
    count = 0
    with _lock:
        shard = table.stream_shard
        table.stream_shard = None  # Table.put_item adds its record through this, and only through it
        try:
            for item in items:
                table.put_item(dict(item))
                count += 1
        finally:
            table.stream_shard = shard
    return count


# --- memory, bounded ---------------------------------------------------------------------------------------------
class _Untracked(list[Any]):
    """An ``instances_tracked`` that keeps nothing: moto appends every model it makes to it."""

    def append(self, instance: Any) -> None:
        pass


_UNTRACKED_SERVICES = ("moto.dynamodb.", "moto.dynamodbstreams.")


def _moto_models(root: type) -> list[type]:
    found: list[type] = []
    todo: list[type] = list(root.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith(_UNTRACKED_SERVICES):
            found.append(cls)
    return found


def stop_moto_instance_tracking() -> None:
    """Stop moto keeping every DynamoDB and DynamoDB Streams model object it makes (idempotent; see the module)."""
    for cls in _moto_models(BaseModel):
        if not isinstance(cls.__dict__.get("instances_tracked"), _Untracked):
            cls.instances_tracked = _Untracked()  # type: ignore[attr-defined]


# --- stream records and iterators, bounded -----------------------------------------------------------------------
class ExpiredIteratorException(JsonRESTError):
    """DynamoDB Streams' answer to an iterator past its lifetime (HTTP 400)."""

    def __init__(self) -> None:
        super().__init__(
            "ExpiredIteratorException", "Iterator expired: past its 15 minutes, or used and not reused soon."
        )


def trim_shard(shard: StreamShard, before: int) -> int:
    """Drop ``shard``'s records numbered below ``before``; return how many. Later numbers stay as they are."""
    count = min(before - shard.starting_sequence_number, len(shard.items))
    if count <= 0:
        return 0
    del shard.items[:count]
    shard.starting_sequence_number += count
    return count


def _clamp(iterator: ShardIterator) -> None:
    """An iterator at a trimmed position reads from the oldest record kept (TRIM_HORIZON semantics)."""
    oldest = iterator.stream_shard.starting_sequence_number
    if iterator.sequence_number is None or iterator.sequence_number < oldest:
        iterator.sequence_number = oldest


@dataclass
class _Held:
    """An iterator handed out and not used yet: a reader's position."""

    iterator: ShardIterator
    handed_at: float
    registry: dict[str, ShardIterator]  # the backend's shard_iterators


class _StreamBookkeeping:
    """The readers' positions, the iterators to expire, and each shard's first sequence number (see the module).

    Called with the lock held (the embedded server serves one request at a time)."""

    def __init__(self) -> None:
        self.unused: dict[str, _Held] = {}
        self.used: deque[tuple[float, str, dict[str, ShardIterator]]] = deque()
        self.first_sequence: weakref.WeakKeyDictionary[StreamShard, int] = weakref.WeakKeyDictionary()
        self.trimmed = 0
        self._swept_at = 0.0

    def handed_out(self, arn: str, iterator: ShardIterator, registry: dict[str, ShardIterator], now: float) -> None:
        self.first_sequence.setdefault(iterator.stream_shard, iterator.stream_shard.starting_sequence_number)
        self.unused[arn] = _Held(iterator, now, registry)

    def read(self, arn: str, registry: dict[str, ShardIterator], now: float) -> None:
        if self.unused.pop(arn, None) is not None:  # its first use: the reader has moved on to the next one
            self.used.append((now, arn, registry))

    def trim(self, shard: StreamShard) -> None:
        positions = [
            held.iterator.sequence_number for held in self.unused.values() if held.iterator.stream_shard is shard
        ]
        if not positions:
            return
        # A used iterator may still be reused (a retry whose answer was lost): keep what it reads, as DynamoDB
        # answers a retried GetRecords with the same records.
        positions += [
            registry[arn].sequence_number
            for _, arn, registry in self.used
            if arn in registry and registry[arn].stream_shard is shard
        ]
        self.trimmed += trim_shard(shard, min(positions))

    def sweep(self, now: float) -> None:
        """Forget the iterators past their lifetime (moto would keep them, and their records, for ever)."""
        while self.used and self.used[0][0] + ITERATOR_REUSE_SECONDS < now:
            _, arn, registry = self.used.popleft()
            registry.pop(arn, None)
        if now - self._swept_at < 1.0:
            return
        self._swept_at = now
        for arn in [arn for arn, held in self.unused.items() if held.handed_at + ITERATOR_LIFETIME_SECONDS < now]:
            held = self.unused.pop(arn)
            held.registry.pop(arn, None)


_books = _StreamBookkeeping()


def stream_stats() -> dict[str, int]:
    """Records trimmed so far, readers' positions held and used iterators kept for reuse (for diagnostics)."""
    with _lock:
        return {
            "records_trimmed": _books.trimmed,
            "readers": len(_books.unused),
            "used_iterators": len(_books.used),
        }


def make_moto_streams_bounded() -> None:
    """Wrap moto's DynamoDB Streams reads so that, for the requests an :class:`EmbeddedDynamoDB` serves, stream
    records are trimmed behind the slowest reader and iterators expire (idempotent; see the module)."""
    global _streams_patched
    if _streams_patched:
        return
    get_shard_iterator = DynamoDBStreamsBackend.get_shard_iterator
    get_records = DynamoDBStreamsBackend.get_records
    describe_stream = DynamoDBStreamsBackend.describe_stream

    @functools.wraps(get_shard_iterator)
    def bounded_get_shard_iterator(
        self: DynamoDBStreamsBackend,
        arn: str,
        shard_id: str,
        shard_iterator_type: str,
        sequence_number: str | None = None,
    ) -> ShardIterator:
        iterator = get_shard_iterator(self, arn, shard_id, shard_iterator_type, sequence_number)
        _clamp(iterator)
        if getattr(_serving, "active", False):
            now = time.monotonic()
            _books.sweep(now)
            _books.handed_out(iterator.arn, iterator, self.shard_iterators, now)
        return iterator

    @functools.wraps(get_records)
    def bounded_get_records(self: DynamoDBStreamsBackend, iterator_arn: str, limit: int) -> dict[str, Any]:
        active = getattr(_serving, "active", False)
        now = time.monotonic()
        if active:
            _books.sweep(now)
            if iterator_arn not in self.shard_iterators:
                raise ExpiredIteratorException()
        iterator = self.shard_iterators[iterator_arn]
        _clamp(iterator)
        result: dict[str, Any] = get_records(self, iterator_arn, limit)
        if active:
            _books.read(iterator_arn, self.shard_iterators, now)
            following = result["NextShardIterator"]
            _books.handed_out(following, self.shard_iterators[following], self.shard_iterators, now)
            _books.trim(iterator.stream_shard)
        return result

    @functools.wraps(describe_stream)
    def bounded_describe_stream(self: DynamoDBStreamsBackend, arn: str) -> dict[str, Any]:
        stream: dict[str, Any] = describe_stream(self, arn)
        shard = self._get_table_from_arn(arn).stream_shard
        first = _books.first_sequence.get(shard) if shard is not None else None
        for described in stream["Shards"] if first is not None else []:
            described["SequenceNumberRange"]["StartingSequenceNumber"] = str(first)  # as before any trim
        return stream

    DynamoDBStreamsBackend.get_shard_iterator = bounded_get_shard_iterator  # type: ignore[method-assign]
    DynamoDBStreamsBackend.get_records = bounded_get_records  # type: ignore[method-assign]
    DynamoDBStreamsBackend.describe_stream = bounded_describe_stream  # type: ignore[method-assign]
    _streams_patched = True


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def check_moto_stream_layout() -> None:
    """Check, on a scratch table, that moto keeps stream records as the trimming assumes, and keeps no replaced
    item or trimmed record once :func:`stop_moto_instance_tracking` has run; raise if not.

    Run at every start of an :class:`EmbeddedDynamoDB`: a moto that stores records or numbers them otherwise
    must stop the service, not make it deliver wrong or missing records.
    """
    try:
        for cls, name, params in (
            (DynamoDBStreamsBackend, "get_shard_iterator", ["self", "arn", "shard_id", "shard_iterator_type"]),
            (DynamoDBStreamsBackend, "get_records", ["self", "iterator_arn", "limit"]),
            (DynamoDBStreamsBackend, "describe_stream", ["self", "arn"]),
        ):
            found = list(inspect.signature(getattr(cls, name)).parameters)[: len(params)]
            _expect(found == params, f"{cls.__name__}.{name}{tuple(params)}, found {tuple(found)}")
        table = Table(  # type: ignore[abstract]
            "iii-stream-layout-probe",
            account_id="000000000000",
            region="us-east-1",
            schema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            attr=[{"AttributeName": "pk", "AttributeType": "S"}],
            streams={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        shard = table.stream_shard
        _expect(isinstance(shard, StreamShard), "Table.stream_shard is a StreamShard")
        assert shard is not None
        first = shard.starting_sequence_number
        _expect(isinstance(first, int) and isinstance(shard.items, list), "StreamShard.starting_sequence_number/items")
        for n in range(3):
            table.put_item({"pk": {"S": "k"}, "n": {"N": str(n)}})
        _expect(len(shard.items) == 3, "StreamShard.items holds one record per write")
        _expect(trim_shard(shard, first + 2) == 2, "trimmed two records")
        table.put_item({"pk": {"S": "k"}, "n": {"N": "3"}})
        numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in shard.get(shard.starting_sequence_number, 10)]
        _expect(numbers == [first + 2, first + 3], f"numbers kept through a trim: {numbers}")
        backend = DynamoDBStreamsBackend("us-east-1", "000000000000")
        horizon = ShardIterator(backend, shard, "TRIM_HORIZON")
        _expect(horizon.sequence_number == first + 2, "TRIM_HORIZON is the oldest record kept")
        _expect(ShardIterator(backend, shard, "LATEST").sequence_number == first + 4, "LATEST follows the last one")
        stale = ShardIterator(backend, shard, "AT_SEQUENCE_NUMBER", first)
        _clamp(stale)
        page = stale.get(10)
        numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in page["Records"]]
        _expect(numbers == [first + 2, first + 3], f"a trimmed position reads from the horizon: {numbers}")
        following = backend.shard_iterators[page["NextShardIterator"]]
        _expect(following.sequence_number == first + 4, "NextShardIterator follows the last record read")
        # Once replaced (and its record trimmed), an item version is kept by nothing: moto tracks no instance.
        replaced = weakref.ref(table.put_item({"pk": {"S": "k"}, "n": {"N": "4"}}))
        record = weakref.ref(shard.items[-1])
        table.put_item({"pk": {"S": "k"}, "n": {"N": "5"}})
        trim_shard(shard, shard.starting_sequence_number + len(shard.items))
        gc.collect()
        _expect(replaced() is None and record() is None, "moto keeps no replaced Item nor trimmed StreamRecord")
        # Snapshots: an item put with the stream shard detached makes no record, and reads back as it was put.
        kept = len(shard.items)
        table.stream_shard = None
        restored = {"pk": {"S": "r"}, "m": {"M": {"b": {"B": "AAE="}, "l": {"L": [{"N": "1"}]}}}, "s": {"SS": ["x"]}}
        table.put_item(restored)
        table.stream_shard = shard
        _expect(len(shard.items) == kept, "Table.put_item adds a stream record only through Table.stream_shard")
        exported = [_wire(item.to_json()["Attributes"]) for item in table.all_items()]
        _expect(restored in exported, f"Table.all_items/Item.to_json give back what was put: {exported}")
        _expect(callable(getattr(DynamoDBBackend, "get_table", None)), "DynamoDBBackend.get_table")
    except Exception as error:
        raise RuntimeError(
            f"moto {moto.__version__} does not keep DynamoDB stream records and models as infra/embedded_dynamodb.py "
            f"assumes (written against moto {MOTO_TESTED}; it relies on StreamShard.items, "
            f"StreamShard.starting_sequence_number, DynamoDBStreamsBackend.shard_iterators, "
            f"BaseModel.instances_tracked, and Table.put_item/all_items for snapshots): {error}"
        ) from error


# --- the server ---------------------------------------------------------------------------------------------------
class _DynamoDBDispatcher:
    """Route by ``X-Amz-Target`` straight to moto's DynamoDB or DynamoDB Streams app, one request at a time.

    moto's own dispatcher works out the service from the Host header first, which walks its list of
    modules on disk for every request (about 1 ms); every request here names its service in the target.
    Anything else (moto's own API) still goes through moto's dispatcher. moto's backends are not thread-safe:
    each request runs under the one lock (see the module).
    """

    _PREFIXES = (("DynamoDBStreams_20120810.", "dynamodbstreams"), ("DynamoDB_20120810.", "dynamodb"))

    def __init__(self) -> None:
        self._fallback = DomainDispatcherApplication(create_backend_app)
        self._apps = {service: create_backend_app(service) for _, service in self._PREFIXES}  # type: ignore[arg-type]

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        app: Any = self._fallback
        for prefix, service in self._PREFIXES:
            if target.startswith(prefix):
                app = self._apps[service]
                break
        with _lock:
            _serving.active = True
            try:
                # The body is built inside the call (moto answers with a complete response), so under the lock.
                return app(environ, start_response)
            finally:
                _serving.active = False


class _NoNagleRequestHandler(MotoRequestHandler):
    # Send each response at once: with Nagle's algorithm on, a response written as headers then body waits
    # for the client's delayed ACK (~40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True


class EmbeddedDynamoDB:
    """A moto server on 127.0.0.1 (port 0 picks a free one); ``endpoint_url`` once started."""

    def __init__(self, port: int = 0) -> None:
        stop_moto_instance_tracking()
        check_moto_stream_layout()
        make_moto_writes_atomic()
        make_moto_streams_bounded()
        moto_fast.install()  # moto's slow paths, answers unchanged (infra/moto_fast.py; III_STREAM_MOTO_FAST=off)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._port = port
        self._server: BaseWSGIServer | None = None
        self.endpoint_url = ""

    def start(self) -> str:
        self._server = make_server(
            "127.0.0.1", self._port, _DynamoDBDispatcher(), threaded=True, request_handler=_NoNagleRequestHandler
        )
        threading.Thread(target=self._server.serve_forever, name="embedded-dynamodb", daemon=True).start()
        host, port = self._server.server_address[:2]
        self.endpoint_url = f"http://{host!s}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
