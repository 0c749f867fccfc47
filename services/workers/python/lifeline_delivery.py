"""Getting task outcomes to the queue through network failures: the pieces behind lifeline_worker.Worker.

services/workers/README.md, "When the network fails", is the contract. In short:

* a call that meets a transient error (`is_transient`) is tried 2 more times at once, then with exponential
  backoff and full jitter (`RetryPolicy`) until 10 s have passed since the first failure;
* then the worker is *offline*: the outcome goes to the journal (`OutcomeJournal`, JSON lines, fsync),
  the worker stops leasing, keeps running what it holds and probes the gateway by extending leases;
* the first probe that gets an answer starts the *sync*: the journal is replayed in order, completions
  batched; when it is empty the worker is *connected* again (`ConnectionStateMachine`);
* a final refusal (anything not transient: a stale fencing token, a task that is gone, ...) is logged once,
  counted, and dropped: the queue has decided, and asking again cannot change its mind.

Everything here needs only the standard library, grpc (for status codes) and protobuf (to read error
details), not the generated stubs: `OutcomeDispatcher` talks to the queue through a transport object
(lifeline_worker provides the gRPC one), so all of it can be tested without a server.
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

log = logging.getLogger("lifeline.worker")

# ----------------------------------------------------------------------------- error classification

TRANSIENT_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,         # also a refused or reset connection
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
})


def is_transient(error_or_code: Any) -> bool:
    """True for errors worth trying again (README: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
    ABORTED); everything else is a final refusal. Takes a grpc.RpcError or a grpc.StatusCode."""
    code = error_or_code.code() if hasattr(error_or_code, "code") and callable(error_or_code.code) else error_or_code
    return code in TRANSIENT_CODES


def _google_rpc_types():
    """google.rpc.Status and ErrorInfo, built in a private descriptor pool: Debian has no googleapis
    package, and a private pool cannot clash with one that is installed."""
    file = descriptor_pb2.FileDescriptorProto(name="lifeline_worker/google_rpc.proto", package="google.rpc",
                                              syntax="proto3", dependency=["google/protobuf/any.proto"])
    f = descriptor_pb2.FieldDescriptorProto
    status = file.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    status.field.add(name="details", number=3, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                     type_name=".google.protobuf.Any")
    info = file.message_type.add(name="ErrorInfo")
    info.field.add(name="reason", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    info.field.add(name="domain", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    factory = message_factory.MessageFactory(pool)
    make = getattr(message_factory, "GetMessageClass", None) or factory.GetPrototype
    return make(pool.FindMessageTypeByName("google.rpc.Status")), make(pool.FindMessageTypeByName("google.rpc.ErrorInfo"))


_Status, _ErrorInfo = _google_rpc_types()


class StreamCallError(grpc.RpcError):
    """A request on the queue's dispatch stream that did not succeed, shaped like the unary call's error: refused by
    its ack (the ack's code, message and reason), or left unanswered by a stream that broke or stalled (UNAVAILABLE,
    DEADLINE_EXCEEDED: transient, so the request is retried — on the next stream or by the unary call)."""

    def __init__(self, code: grpc.StatusCode, details: str = "", reason: str = ""):
        super().__init__(f"{code.name}: {details}")
        self._code, self._details, self.reason = code, details, reason

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self):
        return ()


STATUS_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def status_code(value: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a numeric code (an ack's `code`); UNKNOWN for a number gRPC does not have."""
    return STATUS_BY_VALUE.get(int(value), grpc.StatusCode.UNKNOWN)


def reason_of(error: grpc.RpcError) -> str:
    """The `google.rpc.ErrorInfo` reason of a refusal (e.g. STALE_FENCING_TOKEN), or ''."""
    if isinstance(error, StreamCallError):
        return error.reason
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == "grpc-status-details-bin":
            try:
                details = _Status.FromString(value).details
            except Exception:  # pylint: disable=broad-except  # a proxy's garbage is no reason to crash
                return ""
            for detail in details:
                if detail.type_url.endswith("/google.rpc.ErrorInfo"):
                    return _ErrorInfo.FromString(detail.value).reason
    return ""


def describe(error: grpc.RpcError) -> str:
    """`CODE: message [REASON]` of a failed call."""
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    reason = reason_of(error)
    return f"{code.name if code is not None else 'ERROR'}: {details}" + (f" [{reason}]" if reason else "")


# ------------------------------------------------------------------------------------ retry policy

@dataclass(frozen=True)
class RetryPolicy:
    """How long an outcome is retried before the worker goes offline (README: immediate retries, backoff).

    immediate_retries attempts follow the first failure at once; then the n-th wait (n = 0, 1, ...) is drawn
    uniformly from [0, min(max_delay, base_delay * 2**n)] ("full jitter"), until `budget` seconds have
    passed since the first failed attempt began. Offline, the gateway is probed every backoff step (at most
    max_delay).
    """
    immediate_retries: int = 2
    base_delay: float = 0.1
    max_delay: float = 5.0
    budget: float = 10.0

    def backoff_cap(self, step: int) -> float:
        """The longest wait of backoff step `step` (0-based)."""
        return min(self.max_delay, self.base_delay * (2 ** min(max(step, 0), 62)))

    def backoff(self, step: int, rng: Callable[[], float] = random.random) -> float:
        """A wait of backoff step `step`, with full jitter: uniform in [0, backoff_cap(step)]."""
        return rng() * self.backoff_cap(step)

    def next_wait(self, failures: int, elapsed: float, rng: Callable[[], float] = random.random) -> Optional[float]:
        """After `failures` failed attempts in a row (>= 1), `elapsed` seconds after the first of them began:
        0.0 for an immediate retry, a backoff wait, or None when it is time to give up (go offline). The budget
        ends the immediate retries too: in a black-holed network each attempt lasts until its deadline."""
        if elapsed >= self.budget:
            return None
        if failures <= self.immediate_retries:
            return 0.0
        return min(self.backoff(failures - self.immediate_retries - 1, rng), self.budget - elapsed)


# ---------------------------------------------------------------------------------- connection state

CONNECTED, RETRYING, OFFLINE, SYNCING = "connected", "retrying", "offline", "syncing"
CONNECTION_STATES = (CONNECTED, RETRYING, OFFLINE, SYNCING)

# connected -> retrying -> offline -> syncing -> connected; retrying recovers to connected, a failed sync goes
# back offline; connected -> offline when outcomes go to the journal without a retry (a shutdown that cannot
# deliver, a policy without retries). A restart with a journal starts offline (restore), without a transition.
TRANSITIONS: Dict[str, frozenset] = {
    CONNECTED: frozenset({RETRYING, OFFLINE}),
    RETRYING: frozenset({CONNECTED, OFFLINE}),
    OFFLINE: frozenset({SYNCING}),
    SYNCING: frozenset({CONNECTED, OFFLINE}),
}

StateListener = Callable[[str, str, str], None]


class ConnectionStateMachine:
    """The worker's view of its connection: connected, retrying, offline or syncing.

    Every transition is one log line (`connection retrying → offline: UNAVAILABLE: ...`) and a call of each
    listener with (old, new, reason), on the thread that made the transition (the outcome dispatcher's, as a
    rule): listeners should be quick and must not block. A transition the diagram does not have is refused
    (returns False, logged): it would be a bug, and the state stays what it was.
    """

    def __init__(self, initial: str = CONNECTED, on_change: Optional[StateListener] = None,
                 logger: logging.Logger = log):
        if initial not in CONNECTION_STATES:
            raise ValueError(f"unknown connection state {initial!r}")
        self._state = initial
        self._log = logger
        self._changed = threading.Condition()
        self._listeners: List[StateListener] = [on_change] if on_change else []

    @property
    def state(self) -> str:
        return self._state

    def subscribe(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def transition(self, new: str, reason: str) -> bool:
        """Moves to `new`; False (and no change) when already there or when the diagram has no such step."""
        with self._changed:
            old = self._state
            if new == old:
                return False
            if new not in TRANSITIONS.get(old, ()):
                self._log.warning("connection %s → %s refused: not a transition of the connection state (%s)",
                                  old, new, reason)
                return False
            self._state = new
            self._changed.notify_all()
        self._log.info("connection %s → %s: %s", old, new, reason)
        for listener in list(self._listeners):
            try:
                listener(old, new, reason)
            except Exception:  # pylint: disable=broad-except  # an application's callback must not stop delivery
                self._log.exception("connection state listener failed")
        return True

    def restore(self, state: str) -> None:
        """Sets the state without a transition (no log line, no callback): a restart resuming where the last
        process left off (a journal left behind: offline)."""
        if state not in CONNECTION_STATES:
            raise ValueError(f"unknown connection state {state!r}")
        with self._changed:
            self._state = state
            self._changed.notify_all()

    def wait_for(self, states: Iterable[str], timeout: Optional[float] = None) -> bool:
        """Waits until the state is one of `states`; False on timeout."""
        wanted = set(states)
        with self._changed:
            return self._changed.wait_for(lambda: self._state in wanted, timeout)


# ---------------------------------------------------------------------------------------- outcomes

@dataclass
class Outcome:
    """A completion, a failure, or (only in the journal) the last progress of a task.

    result: the result as JSON text; error: {"code", "message", "retryable"[, "details"]} (in the journal also
    "retry_after_ms" when retry_after is set);
    retry_after: seconds (failures only); progress: {"percent", "message"} — for "progress" entries, and on an
    outcome the task's latest progress the queue has not heard yet (journaled before the outcome).
    seq: the journal entry this came from, if any.
    """
    kind: str
    task_id: str
    fencing_token: int
    result: Optional[str] = None
    error: Optional[Dict[str, Any]] = None
    retry_after: Optional[float] = None
    progress: Optional[Dict[str, Any]] = None
    seq: Optional[int] = None
    arrived: float = field(default_factory=time.monotonic, repr=False, compare=False)

    @classmethod
    def complete(cls, task_id: str, fencing_token: int, result: Optional[str], progress=None) -> "Outcome":
        return cls("complete", task_id, int(fencing_token), result=result, progress=progress)

    @classmethod
    def fail(cls, task_id: str, fencing_token: int, code: str, message: str = "", retryable: bool = False,
             details: Optional[Dict[str, str]] = None, retry_after: Optional[float] = None, progress=None) -> "Outcome":
        error: Dict[str, Any] = {"code": code, "message": message, "retryable": bool(retryable)}
        if details:
            error["details"] = {str(k): str(v) for k, v in details.items()}
        return cls("fail", task_id, int(fencing_token), error=error, retry_after=retry_after, progress=progress)

    @property
    def what(self) -> str:
        return {"complete": "completion", "fail": "failure"}.get(self.kind, self.kind)

    def journal_records(self) -> List[Dict[str, Any]]:
        """The journal entries (without seq and at) that keep this outcome: its unsent progress, then itself."""
        records = []
        if self.kind != "progress" and self.progress is not None:
            records.append(_record("progress", self.task_id, self.fencing_token, "progress", dict(self.progress)))
        if self.kind == "complete":
            records.append(_record("complete", self.task_id, self.fencing_token, "result", _json_value(self.result)))
        elif self.kind == "fail":
            error = dict(self.error or {})
            if self.retry_after is not None:
                error["retry_after_ms"] = int(round(self.retry_after * 1000))
            records.append(_record("fail", self.task_id, self.fencing_token, "error", error))
        elif self.kind == "progress":
            records.append(_record("progress", self.task_id, self.fencing_token, "progress", dict(self.progress or {})))
        else:
            raise ValueError(f"unknown outcome kind {self.kind!r}")
        return records

    @classmethod
    def from_journal(cls, entry: Dict[str, Any]) -> "Outcome":
        kind = entry["kind"]
        outcome = cls(kind, str(entry["task_id"]), int(entry["fencing_token"]), seq=entry.get("seq"))
        if kind == "complete":
            value = entry.get("result")
            outcome.result = "" if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        elif kind == "fail":
            outcome.error = dict(entry.get("error") or {})
            retry_after_ms = outcome.error.pop("retry_after_ms", None)
            if retry_after_ms is not None:
                outcome.retry_after = int(retry_after_ms) / 1000.0
        elif kind == "progress":
            outcome.progress = dict(entry.get("progress") or {})
        else:
            raise ValueError(f"unknown journal entry kind {kind!r}")
        return outcome


def _record(kind: str, task_id: str, token: int, key: str, value: Any) -> Dict[str, Any]:
    # Key order is the README's: seq, kind, task_id, fencing_token, result|error|progress, at.
    return {"kind": kind, "task_id": task_id, "fencing_token": str(int(token)), key: value}


def _json_value(text: Optional[str]) -> Any:
    """A result (JSON text) as a JSON value for the journal; None (null) when there is none."""
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # not JSON: kept as a string (replayed as that string's JSON)


def _now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ----------------------------------------------------------------------------------------- journal

class OutcomeJournal:
    """The offline journal: `<directory>/<worker name>.journal`, one JSON object a line (README, "Journal").

    append() writes and fsyncs before it returns (an outcome is kept only once that is done); remove()
    rewrites the file with what is left (temporary file, fsync, rename, fsync of the directory). A torn last
    line (a crash in the middle of an append) is ignored when the journal is loaded, and cut off.
    """

    def __init__(self, directory: str, worker_name: str, fsync: Callable[[int], None] = os.fsync):
        self.directory = directory
        self.path = os.path.join(directory, journal_file_name(worker_name))
        self._fsync = fsync
        self._lock = threading.Lock()
        self._entries: List[Dict[str, Any]] = []
        self._next_seq = 1

    def load(self) -> List[Dict[str, Any]]:
        """Reads the journal from disk (what an earlier run left) and returns its entries, oldest first."""
        with self._lock:
            try:
                with open(self.path, "rb") as file:
                    data = file.read()
            except FileNotFoundError:
                self._entries = []
                return []
            entries, damaged = [], False
            lines = data.split(b"\n")
            complete_lines, tail = lines[:-1], lines[-1]   # tail: text after the last newline ('' when none)
            for number, raw in enumerate(complete_lines, 1):
                if not raw.strip():
                    continue
                entry = _parse_entry(raw)
                if entry is None:
                    damaged = True
                    log.warning("journal %s: line %d is not a journal entry, skipped: %.120r", self.path, number, raw)
                    continue
                entries.append(entry)
            if tail.strip():
                damaged = True
                entry = _parse_entry(tail)
                if entry is not None:
                    entries.append(entry)  # complete but for its newline
                else:
                    log.warning("journal %s: ignoring a torn last line (%d bytes; a crash while appending)",
                                self.path, len(tail))
            self._entries = entries
            self._next_seq = max((e["seq"] for e in entries), default=0) + 1
            if damaged:
                self._rewrite_locked(entries)
            return list(entries)

    def append(self, records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Appends entries (seq and at are added) with one write and one fsync; returns them as written."""
        if not records:
            return []
        with self._lock:
            written = []
            for record in records:
                entry = {"seq": self._next_seq}
                entry.update(record)
                entry["at"] = _now_rfc3339()
                self._next_seq += 1
                written.append(entry)
            data = "".join(_dump(e) + "\n" for e in written).encode("utf-8")
            os.makedirs(self.directory, exist_ok=True)
            created = not os.path.exists(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    self._fsync(fd)
                except OSError:
                    try:
                        os.ftruncate(fd, size)  # not kept: leave no half-written entries behind either
                    except OSError:
                        pass
                    raise
            finally:
                os.close(fd)
            if created:
                self._fsync_directory()
            self._entries.extend(written)
            return written

    def entries(self) -> List[Dict[str, Any]]:
        """The entries not yet removed, oldest first (a copy)."""
        with self._lock:
            return list(self._entries)

    def remove(self, seqs: Iterable[int]) -> int:
        """Drops the entries with these seqs and rewrites the file with what is left; returns how many are left."""
        gone = set(seqs)
        with self._lock:
            if gone:
                left = [e for e in self._entries if e["seq"] not in gone]
                if len(left) != len(self._entries):
                    self._rewrite_locked(left)
            return len(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _rewrite_locked(self, entries: List[Dict[str, Any]]) -> None:
        os.makedirs(self.directory, exist_ok=True)
        temporary = f"{self.path}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            data = "".join(_dump(e) + "\n" for e in entries).encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            self._fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.path)
        self._fsync_directory()
        self._entries = list(entries)

    def _fsync_directory(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            self._fsync(fd)
        except OSError:
            pass  # some file systems cannot fsync a directory
        finally:
            os.close(fd)


def journal_file_name(worker_name: str) -> str:
    """`<worker name>.journal`, with characters a file name cannot safely hold replaced by `_`."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", worker_name).lstrip(".") or "worker"
    return f"{safe}.journal"


def _dump(entry: Dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


def _parse_entry(raw: bytes) -> Optional[Dict[str, Any]]:
    try:
        entry = json.loads(raw.decode("utf-8"))
        if (isinstance(entry, dict) and isinstance(entry.get("seq"), int)
                and entry.get("kind") in ("complete", "fail", "progress") and entry.get("task_id")):
            int(entry["fencing_token"])
            return entry
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    return None


# ----------------------------------------------------------------------------------------- batching

class OutcomeBatcher:
    """Collects outcomes for the dispatcher. take() returns the next batch: the outcomes waiting, once
    `max_delay` has passed since the oldest arrived or `max_batch` completions are waiting, whichever is first.
    Failures ride along in arrival order (each still goes out as its own FailTask)."""

    def __init__(self, max_batch: int = 100, max_delay: float = 0.005, clock: Callable[[], float] = time.monotonic):
        self.max_batch = max(1, max_batch)
        self.max_delay = max(0.0, max_delay)
        self._clock = clock
        self._items: Deque[Outcome] = collections.deque()
        self._completions = 0
        self._closed = False
        self._ready = threading.Condition()

    def put(self, outcome: Outcome) -> None:
        with self._ready:
            outcome.arrived = self._clock()
            self._items.append(outcome)
            if outcome.kind == "complete":
                self._completions += 1
            self._ready.notify_all()

    def take(self, timeout: Optional[float] = None) -> List[Outcome]:
        """The next batch; [] when nothing arrived within `timeout`, or once closed and empty."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._items or self._closed, timeout):
                return []
            while self._items and not self._closed and self._completions < self.max_batch:
                left = self._items[0].arrived + self.max_delay - self._clock()
                if left <= 0:
                    break
                self._ready.wait(left)
            batch: List[Outcome] = []
            completions = 0
            while self._items and completions < self.max_batch:
                outcome = self._items.popleft()
                if outcome.kind == "complete":
                    completions += 1
                    self._completions -= 1
                batch.append(outcome)
            return batch

    def drain(self) -> List[Outcome]:
        """Everything waiting, at once."""
        with self._ready:
            batch = list(self._items)
            self._items.clear()
            self._completions = 0
            return batch

    def close(self) -> None:
        """take() stops waiting: it returns what is there, then []."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def __len__(self) -> int:
        with self._ready:
            return len(self._items)


def completion_chunks(outcomes: Sequence[Outcome], max_batch: int) -> List[List[Outcome]]:
    """Consecutive groups of at most max_batch, a task id at most once in each (CompleteTasks refuses repeats)."""
    chunks: List[List[Outcome]] = []
    current: List[Outcome] = []
    ids = set()
    for outcome in outcomes:
        if len(current) >= max_batch or outcome.task_id in ids:
            chunks.append(current)
            current, ids = [], set()
        current.append(outcome)
        ids.add(outcome.task_id)
    if current:
        chunks.append(current)
    return chunks


def replay_units(items: Sequence[Outcome], max_batch: int) -> List[List[Outcome]]:
    """The calls a sync makes, in journal order: consecutive completions together (one CompleteTasks, at most
    max_batch, a task once), each failure and each progress alone. A progress entry goes before the batch
    being filled rather than closing it — a task's progress still precedes its outcome, the only order that
    matters, and the completions stay one call."""
    units: List[List[Outcome]] = []
    batch: Optional[List[Outcome]] = None
    for outcome in items:
        if outcome.kind == "complete":
            if batch is None or len(batch) >= max_batch or any(o.task_id == outcome.task_id for o in batch):
                batch = []
                units.append(batch)
            batch.append(outcome)
        elif outcome.kind == "progress" and batch is not None:
            units.insert(units.index(batch), [outcome])
        else:
            units.append([outcome])
            if outcome.kind != "progress":
                batch = None
    return units


# ------------------------------------------------------------------------------------------- stats

@dataclass
class WorkerStats:
    """What a worker did, for logs and tests. Updated from several threads through add().

    completed / failed: outcomes the queue accepted (live or replayed from the journal); released: tasks given
    back; abandoned: tasks that ended without an outcome (cancelled, lease lost); retries: repeated attempts
    of an outcome; journaled: outcomes written to the journal; replayed: journaled outcomes the queue accepted
    on a sync; refused: outcomes finally refused (logged once, dropped); ended: handlers that ended.
    """
    completed: int = 0
    failed: int = 0
    released: int = 0
    abandoned: int = 0
    retries: int = 0
    journaled: int = 0
    replayed: int = 0
    refused: int = 0
    ended: int = 0
    commands: List[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: str, amount: int = 1) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + amount)

    @property
    def finished(self) -> int:
        """Tasks whose handler ended in this process (what `once` counts)."""
        return self.ended

    def summary(self) -> str:
        return (f"{self.completed} completed, {self.failed} failed, {self.released} released, {self.abandoned} abandoned, "
                f"{self.retries} retries, {self.journaled} journaled, {self.replayed} replayed, {self.refused} refused")


# ------------------------------------------------------------------------------------- dispatching

class OutcomeDispatcher:
    """Delivers outcomes in the background: batches completions, retries transient failures, journals
    when offline, probes, and replays the journal on reconnect (README, "When the network fails").

    transport: what talks to the queue —
      complete(outcomes) -> [None (accepted) | refusal text] per outcome, raises grpc.RpcError for the call;
      fail(outcome) -> a text for the log (how the queue took it), raises grpc.RpcError;
      progress(outcome) -> None, raises grpc.RpcError (journaled progress, replayed);
      probe(journaled: [(task_id, fencing_token)]) -> True when the gateway answered (leases of held tasks
      extended, or refused): the network is back.
    """

    def __init__(self, transport: Any, journal: OutcomeJournal, machine: ConnectionStateMachine,
                 stats: WorkerStats, policy: RetryPolicy = RetryPolicy(), batcher: Optional[OutcomeBatcher] = None,
                 rng: Callable[[], float] = random.random, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.transport = transport
        self.journal = journal
        self.machine = machine
        self.stats = stats
        self.policy = policy
        self.batcher = batcher or OutcomeBatcher()
        self._rng = rng
        self._sleep = sleep
        self._clock = clock
        self._route = threading.RLock()   # the state, the batcher and the journal change together under it
        self._closing = threading.Event()
        self._answered = threading.Event()  # some call got an answer from the gateway: probe now
        self._first_failure_at: Optional[float] = None  # of the failures that made the state `retrying`
        self._retrying_outcome = False  # an outcome is between attempts: only its delivery ends `retrying`
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        self._inflight: List[Outcome] = []
        self._memory: List[Outcome] = []  # outcomes the journal could not take (disk full): kept until synced
        self.first_sync_done = threading.Event()

    # ---------------------------------------------------------------------------- the application side

    def submit(self, outcome: Outcome) -> None:
        """Hands over an outcome. Connected (or retrying): it joins the next batch. Offline or syncing: it is
        journaled (with fsync) before this returns."""
        with self._route:
            if self._closed or self.machine.state in (OFFLINE, SYNCING):
                self._keep([outcome], "offline" if not self._closed else "worker stopped")
                return
            self.batcher.put(outcome)

    def gateway_answered(self) -> None:
        """Some call got an answer (a heartbeat): offline, the next probe goes at once."""
        if self.machine.state == OFFLINE:
            self._answered.set()

    def call_answered(self) -> None:
        """A queue call other than an outcome (a lease, a lease extension, progress) got an answer — a final
        refusal is one too: `retrying` ends (unless an outcome is still being retried), offline probes at once."""
        with self._route:
            state = self.machine.state
            if state == RETRYING and not self._retrying_outcome:
                self._first_failure_at = None
                self.machine.transition(CONNECTED, "the gateway answers again")
            elif state == OFFLINE:
                self._answered.set()

    def call_failed(self, reason: str) -> None:
        """A queue call other than an outcome met a transient error: `retrying`, and `offline` once the
        failures have lasted the policy's budget (then outcomes go to the journal and leasing stops)."""
        with self._route:
            now = self._clock()
            state = self.machine.state
            if state == CONNECTED:
                self._first_failure_at = now
                self.machine.transition(RETRYING, reason)
            elif state == RETRYING:
                if self._first_failure_at is None:
                    self._first_failure_at = now
                elif now - self._first_failure_at >= self.policy.budget:
                    self._go_offline([], reason)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="outcomes", daemon=True)
        self._thread.start()

    def close(self, timeout: float) -> None:
        """Stops after delivering what is waiting (retrying as the policy says); what cannot be delivered
        within `timeout` goes to the journal."""
        self._closing.set()
        self._answered.set()
        self.batcher.close()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._route:
            self._closed = True
            left = list(self._inflight) + self.batcher.drain()
            self._inflight = []
            if left:
                self._keep(left, "worker stopping with outcomes undelivered")
                if self.machine.state in (CONNECTED, RETRYING):
                    self.machine.transition(OFFLINE, f"{len(left)} outcome(s) journaled at shutdown")

    @property
    def pending(self) -> int:
        """Outcomes not delivered yet: waiting, in flight, journaled or in memory."""
        with self._route:
            return len(self.batcher) + len(self._inflight) + len(self._memory) + sum(
                1 for e in self.journal.entries() if e["kind"] != "progress")

    # ---------------------------------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            if self.machine.state == OFFLINE:
                self._offline(first_step=None)   # a journal from an earlier run: sync at once
            self.first_sync_done.set()
            while True:
                if self.machine.state == OFFLINE:  # an outcome's retries ran out, or the other calls' did
                    if self._closing.is_set():
                        return
                    self._offline(first_step=self._offline_step())
                    continue
                batch = self.batcher.take(timeout=0.5)
                if not batch:
                    if self._closing.is_set():
                        return
                    continue
                with self._route:
                    self._inflight = batch
                delivered = self._deliver(batch)
                with self._route:
                    self._inflight = []
                if not delivered and self._closing.is_set():
                    return
        except Exception:  # pylint: disable=broad-except
            log.exception("outcome delivery stopped unexpectedly")
        finally:
            self.first_sync_done.set()

    def _offline_step(self) -> int:
        """The backoff step whose cap is max_delay: offline probes come at most that far apart."""
        step = 0
        while self.policy.backoff_cap(step) < self.policy.max_delay and step < 62:
            step += 1
        return step

    def _deliver(self, batch: List[Outcome]) -> bool:
        """Sends a batch, retrying transient failures; False when it went offline (the rest journaled)."""
        units: List[List[Outcome]] = completion_chunks([o for o in batch if o.kind == "complete"], self.batcher.max_batch)
        units += [[o] for o in batch if o.kind != "complete"]
        failures, first_failure, index = 0, 0.0, 0
        while index < len(units):
            unit = units[index]
            started = self._clock()
            try:
                self._send(unit, replay=False)
            except grpc.RpcError as error:
                if not is_transient(error):
                    for outcome in unit:
                        self._refused(outcome, describe(error))
                    index += 1
                    continue
                if failures == 0:
                    first_failure = started
                failures += 1
                wait = self.policy.next_wait(failures, self._clock() - first_failure, self._rng)
                if wait is not None and wait > 0 and self._closing.is_set():
                    wait = None  # stopping: no backoff, what is left goes to the journal
                if self.machine.state == OFFLINE:
                    wait = None  # the worker went offline meanwhile (other calls failed for long enough)
                if wait is None:
                    with self._route:
                        if self.machine.state == CONNECTED:  # slow failures can spend the budget in the immediate retries
                            self.machine.transition(RETRYING, describe(error))
                        self._retrying_outcome = False
                        left = [o for u in units[index:] for o in u]
                        self._go_offline(left, describe(error))
                    return False
                self.stats.add("retries")
                # The first transient failure makes the state `retrying`, immediate retries included.
                with self._route:
                    self._retrying_outcome = True
                    if self.machine.state == CONNECTED:
                        self._first_failure_at = first_failure
                        self.machine.transition(RETRYING, describe(error))
                log.debug("%s of task %s: %s; retry %d in %.2fs", unit[0].what, unit[0].task_id, describe(error),
                          failures, wait)
                if wait > 0:
                    self._sleep(wait)
                continue
            index += 1
            failures = 0
            with self._route:
                self._retrying_outcome = False
                if self.machine.state == RETRYING:
                    self._first_failure_at = None
                    self.machine.transition(CONNECTED, "outcomes delivered again")
        return True

    def _send(self, unit: List[Outcome], replay: bool) -> None:
        """One call for a unit (completions together, or one failure/progress); counts what the queue took."""
        kind = unit[0].kind
        if kind == "complete":
            refusals = self.transport.complete(unit)
            for outcome, refusal in zip(unit, refusals):
                if refusal is None:
                    self.stats.add("completed")
                    if replay:
                        self.stats.add("replayed")
                    log.info("task %s completed%s", outcome.task_id, " (from the journal)" if replay else "")
                else:
                    self._refused(outcome, refusal)
        elif kind == "fail":
            outcome = unit[0]
            how = self.transport.fail(outcome)
            self.stats.add("failed")
            if replay:
                self.stats.add("replayed")
            log.info("task %s failed with %s (%s)%s", outcome.task_id, (outcome.error or {}).get("code", "?"), how,
                     " (from the journal)" if replay else "")
        elif kind == "progress":
            try:
                self.transport.progress(unit[0])
            except grpc.RpcError as error:
                if is_transient(error):
                    raise
                log.debug("journaled progress of task %s refused: %s", unit[0].task_id, describe(error))
        else:
            raise ValueError(f"unknown outcome kind {kind!r}")

    def _refused(self, outcome: Outcome, why: str) -> None:
        self.stats.add("refused")
        log.warning("task %s: %s refused, dropped: %s", outcome.task_id, outcome.what, why)

    def _keep(self, outcomes: List[Outcome], why: str) -> None:
        """Journals outcomes (with their unsent progress); in memory when the journal cannot be written."""
        records = [r for o in outcomes for r in o.journal_records()]
        # Progress first: each task's progress still precedes its outcome, and the completions stay together.
        records = [r for r in records if r["kind"] == "progress"] + [r for r in records if r["kind"] != "progress"]
        try:
            self.journal.append(records)
        except OSError as error:
            log.error("journal %s not writable (%s): %d outcome(s) kept in memory only", self.journal.path, error,
                      len(outcomes))
            self._memory.extend(outcomes)
            return
        kept = [o for o in outcomes if o.kind != "progress"]
        self.stats.add("journaled", len(kept))
        for outcome in kept:
            log.info("task %s: %s journaled (%s)", outcome.task_id, outcome.what, why)

    def _go_offline(self, outcomes: List[Outcome], reason: str) -> None:
        with self._route:
            left = outcomes + self.batcher.drain()
            self._keep(left, "offline")
            self._first_failure_at = None
            self.machine.transition(OFFLINE, reason)

    def _offline(self, first_step: Optional[int]) -> None:
        """Probes every backoff step until the gateway answers, then syncs; returns once connected (or closing)."""
        step = first_step
        while not self._closing.is_set():
            if step is not None:
                self._answered.wait(self.policy.backoff(step, self._rng))
                if self._closing.is_set():
                    return
                step = min(step + 1, 62)
            else:
                step = self._offline_step()  # the first attempt is immediate, then every backoff step
            self._answered.clear()
            journaled = []
            with self._route:
                for outcome in self._memory:
                    journaled.append((outcome.task_id, outcome.fencing_token))
                for entry in self.journal.entries():
                    if entry["kind"] != "progress":
                        journaled.append((entry["task_id"], int(entry["fencing_token"])))
            try:
                answered = self.transport.probe(journaled)
            except Exception:  # pylint: disable=broad-except
                log.exception("probe failed")
                answered = False
            if answered and self._sync():
                return
            self.first_sync_done.set()  # tried once: the worker may register; leasing still waits for the sync

    def _sync(self) -> bool:
        """Replays the journal in order; True when it is empty and the worker is connected again."""
        self.machine.transition(SYNCING, "the gateway answers; replaying the journal")
        while True:
            with self._route:
                memory, self._memory = self._memory, []
                entries = self.journal.entries()
                if not memory and not entries:
                    self.machine.transition(CONNECTED, "journal replayed")
                    return True
            units = replay_units(memory + [Outcome.from_journal(e) for e in entries], self.batcher.max_batch)
            done: List[int] = []
            for number, unit in enumerate(units):
                if self._closing.is_set():
                    self._after_sync(done, [o for u in units[number:] for o in u if o.seq is None])
                    self.machine.transition(OFFLINE, "worker stopping during the sync")
                    return False
                try:
                    self._send(unit, replay=True)
                except grpc.RpcError as error:
                    if is_transient(error):
                        self._after_sync(done, [o for u in units[number:] for o in u if o.seq is None])
                        self.machine.transition(OFFLINE, describe(error))
                        return False
                    for outcome in unit:
                        if outcome.kind != "progress":
                            self._refused(outcome, describe(error))
                done.extend(o.seq for o in unit if o.seq is not None)
            self._after_sync(done, [])

    def _after_sync(self, done: List[int], undelivered_memory: List[Outcome]) -> None:
        with self._route:
            self._memory = undelivered_memory + self._memory
            try:
                left = self.journal.remove(done)
            except OSError as error:
                log.error("journal %s could not be rewritten (%s); delivered entries will be sent again", self.journal.path,
                          error)
                return
            if done:
                log.info("journal %s: %d entr%s replayed, %d left", self.journal.path, len(done),
                         "y" if len(done) == 1 else "ies", left)
