"""A small reusable Lifeline worker for Python.

    worker = Worker(target="http://127.0.0.1:5100", api_key=key, name="py-1",
                    handlers={"demo.echo": lambda ctx: {"echo": ctx.payload}},
                    on_state_change=lambda old, new, reason: print(old, "->", new, reason))
    worker.install_signal_handlers()   # SIGINT/SIGTERM -> graceful stop
    worker.run()                       # returns after the graceful stop

The life it follows is services/workers/README.md (the contract of all three worker libraries):
replay the offline journal left by an earlier run -> RegisterWorker -> heartbeats over one HeartbeatStream
(unary Heartbeat when the stream cannot be opened), honouring the commands that come back (`drain`: lease no
more, finish what runs, then stop; `cancel_task`: tell that handler, report no outcome) -> tasks pushed on the
queue's dispatch stream (QueueService.Dispatch: leased and started, up to the free slots) -> the handler, on a
thread of its own (progress reports extend the lease; a keeper thread extends the leases of handlers that stay
silent) -> the outcome. While the stream is open, outcomes, progress, lease extensions and releases go on it,
each answered by an ack (DispatchStream); otherwise by unary calls: completions that finish together as one
CompleteTasks, a failure as one FailTask. With `dispatch_stream=False`, or when the queue has no stream
(UNIMPLEMENTED), tasks are leased with LeaseTasks long polls (`start: true`) instead.

Outcomes are never dropped on a network failure (lifeline_delivery): a transient error (on the stream: a stream
that broke or stalled before the ack) is retried at once, on the next stream or unary, then with backoff; after
10 s the worker goes offline — the outcome is journaled (fsync) in `<journal_dir>/<name>.journal`, leasing
stops, held handlers run on and their leases are extended as soon as the gateway answers again; then the journal
is replayed and leasing resumes. A final refusal (a stale fencing token: the lease had ended) is logged once,
counted (`stats.refused`) and dropped. The connection state (connected, retrying, offline, syncing) is
`worker.connection_state`; `on_state_change(old, new, reason)` hears every transition.

Stopping is ordered: lease no more, tell running handlers (`ctx.cancelled`), wait for them up to
`shutdown_grace`, flush the outcome batch, journal what could not be delivered, release what is still held
(no attempt is used), half-close the dispatch stream, stop heartbeats, DeregisterWorker.

A handler takes a TaskContext and returns any JSON-serialisable value, the task's result. It fails the task
by raising TaskFailed(code, message, retryable, retry_after=seconds); any other exception fails it as
retryable `UNHANDLED_EXCEPTION`, except while the worker is stopping and has told the handler to give up
(`ctx.raise_if_cancelled()` raises TaskCancelled): then the task is released. Cancellation is cooperative,
since Python threads cannot be interrupted.

Needs the stubs from generate.sh and Debian's python3-grpcio and python3-protobuf (/usr/bin/python3).
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_module
import signal
import socket
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

_here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_here, "_generated"))
if _here not in sys.path:
    sys.path.insert(0, _here)

import grpc  # noqa: E402
from google.protobuf import duration_pb2  # noqa: E402

from lifeline_delivery import (  # noqa: E402,F401  (re-exported: `from lifeline_worker import ...` keeps working)
    CONNECTED, CONNECTION_STATES, OFFLINE, RETRYING, SYNCING, TRANSIENT_CODES, ConnectionStateMachine, Outcome,
    OutcomeBatcher, OutcomeDispatcher, OutcomeJournal, RetryPolicy, StreamCallError, WorkerStats, describe,
    is_transient, reason_of, status_code)

try:
    from lifeline.checkpoint.v1 import checkpoint_pb2, checkpoint_pb2_grpc  # noqa: E402
    from lifeline.common.v1 import common_pb2  # noqa: E402
    from lifeline.queue.v1 import queue_pb2, queue_pb2_grpc  # noqa: E402
    from lifeline.registry.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402
except ImportError as error:  # a setup problem: say how to fix it
    raise ImportError(f"{error}: the gRPC stubs are missing; run services/workers/python/generate.sh first") from error
if not hasattr(queue_pb2, "DispatchRequest"):  # stubs generated before the dispatch stream was in the contract
    raise ImportError("the gRPC stubs are older than the contracts (no DispatchRequest); run "
                      "services/workers/python/generate.sh again")

log = logging.getLogger("lifeline.worker")

DEFAULT_JOURNAL_DIR = ".lifeline-journal"


class TaskFailed(Exception):
    """Raised by a handler to fail its task with a structured error.

    retryable=True returns the task to pending after its backoff (until its retries run out); retryable=False
    ends it as failed. retry_after (seconds) overrides the task's backoff for this retry; given without
    `retryable`, it makes the failure retryable.
    """

    def __init__(self, code: str, message: str = "", retryable: Optional[bool] = None,
                 details: Optional[Dict[str, str]] = None, retry_after: Optional[float] = None):
        super().__init__(f"{code}: {message}")
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must not be negative")
        self.code = code
        self.message = message
        self.retryable = (retry_after is not None) if retryable is None else bool(retryable)
        self.details = dict(details or {})
        self.retry_after = retry_after


TaskFailure = TaskFailed  # the name before retry_after; both work


class TaskCancelled(Exception):
    """Raised by TaskContext.raise_if_cancelled once the handler should give up."""


class TaskContext:
    """What a handler gets: the leased task, its parsed payload, progress reporting, cancellation."""

    def __init__(self, worker: "Worker", task: "queue_pb2.Task"):
        self._worker = worker
        self.task = task
        self.cancel_event = threading.Event()
        self.cancel_reason = ""
        self.lost = False  # the lease is no longer ours: cancelled, expired or superseded
        self.stream: Optional["DispatchStream"] = None  # the dispatch stream that pushed the task (None: leased)
        self.last_extended = time.monotonic()
        self.progress: Optional[Dict[str, Any]] = None  # the latest progress reported by the handler
        self.progress_version = 0                       # how many reports so far
        self.progress_recorded = 0                      # the version the queue has recorded
        self.done = False                               # the handler has ended: lease results no longer matter

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def task_type(self) -> str:
        return self.task.type

    @property
    def fencing_token(self) -> int:
        return self.task.fencing_token

    @property
    def attempt(self) -> int:
        """1 for the first run, 2 for the first retry, ..."""
        return self.task.retry_count + 1

    @property
    def payload(self) -> Any:
        """The task's payload, parsed from JSON ({} when empty)."""
        return json.loads(self.task.payload) if self.task.payload else {}

    @property
    def workflow_id(self) -> Optional[str]:
        """The workflow the task belongs to (its saved state lives under this id), if any."""
        return self.task.workflow_id or None

    @property
    def resume_checkpoint_id(self) -> Optional[str]:
        """The checkpoint to resume from: set when recovery requeued the task after its worker died. None: start over."""
        return self.task.resume_checkpoint_id or None

    def load_resume_context(self) -> Optional[Any]:
        """The context (parsed JSON object) of resume_checkpoint_id, verified by the checkpoint service; None when there is none."""
        if not self.resume_checkpoint_id:
            return None
        response = self._worker.checkpoints.GetCheckpoint(
            checkpoint_pb2.GetCheckpointRequest(checkpoint_id=self.resume_checkpoint_id), timeout=self._worker.rpc_timeout)
        return json.loads(response.checkpoint.state.context or "{}")

    def save_checkpoint(self, name: str, context: Any, phase: int = 0) -> str:
        """Saves progress as a checkpoint of the task's workflow (or task-<id>): context (a JSON-serializable dict). Returns its id."""
        request = checkpoint_pb2.CreateCheckpointRequest(
            workflow_id=self.workflow_id or f"task-{self.task_id}", name=name,
            type=checkpoint_pb2.CHECKPOINT_TYPE_AUTO, phase=phase, agent=self._worker.worker_id or "",
            state=checkpoint_pb2.CheckpointState(
                workflow=checkpoint_pb2.WorkflowState(current_phase=phase, status="running"),
                context=json.dumps(context, separators=(",", ":"))))
        return self._worker.checkpoints.CreateCheckpoint(request, timeout=self._worker.rpc_timeout).metadata.id

    @property
    def cancelled(self) -> bool:
        """True once the task was cancelled, its lease lost, or the worker is stopping."""
        return self.cancel_event.is_set()

    def raise_if_cancelled(self) -> None:
        """Raises TaskCancelled when the handler should give up."""
        if self.cancel_event.is_set():
            raise TaskCancelled(self.cancel_reason or "cancelled")

    def report_progress(self, percent: int, message: str = "") -> None:
        """Records progress (0-100); it is sent, and the lease extended, by the worker's lease keeper right away.

        Never blocks and never raises for a network failure: the handler goes on; a report the queue has not
        recorded yet is sent with the next lease extension that gets through (offline: the first probe that
        reaches the gateway), or journaled with the task's outcome. A later report replaces an earlier one not
        yet sent. If the queue says the lease is gone, the context is marked lost (ctx.cancelled)."""
        self.progress = {"percent": max(0, min(100, int(percent))), "message": str(message)[:1024]}
        self.progress_version += 1
        self._worker._progress_reported.set()

    @property
    def progress_pending(self) -> bool:
        """The latest progress has not been recorded by the queue yet."""
        return self.progress is not None and self.progress_recorded < self.progress_version

    def lose(self, reason: str) -> None:
        """The lease is no longer ours: tell the handler; no outcome will be reported."""
        self.lost = True
        self.cancel_reason = reason
        self.cancel_event.set()


# ------------------------------------------------------------------------------------ channels

class _MetadataInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                           grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds fixed metadata (the API key) to every call.

    An interceptor rather than call credentials: gRPC sends call credentials only over TLS, and the
    local gateway speaks cleartext HTTP/2.
    """

    def __init__(self, metadata: Iterable[Tuple[str, str]]):
        self._metadata = list(metadata)

    def _with_metadata(self, details):
        return _CallDetails(details.method, details.timeout, list(details.metadata or []) + self._metadata,
                            details.credentials, getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_metadata(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_metadata(details), request)

    def intercept_stream_unary(self, continuation, details, requests):
        return continuation(self._with_metadata(details), requests)

    def intercept_stream_stream(self, continuation, details, requests):
        return continuation(self._with_metadata(details), requests)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


# gRPC's defaults wait up to 2 minutes between reconnection attempts: after an outage the worker would stay
# cut off long after the network is back. Reconnect quickly instead (100 ms doubling to 2 s), and notice a
# dead connection (a long poll or the heartbeat stream on a peer that vanished) through keepalive pings.
# Not grpc.min_reconnect_backoff_ms: gRPC core uses it as the connect timeout, and a small one makes
# connection attempts on a busy machine give up ("tcp handshaker shutdown").
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 10000),
    ("grpc.keepalive_timeout_ms", 5000),
    ("grpc.http2.max_pings_without_data", 0),
]


def open_channel(target: str, api_key: Optional[str] = None) -> grpc.Channel:
    """A channel to the gateway at `target` (`http://host:port`, `https://host:port` or `host:port`)
    that sends `authorization: Bearer <api_key>`; the gateway takes the tenant and role from it."""
    address = target.split("://", 1)[-1].rstrip("/")
    channel = (grpc.secure_channel(address, grpc.ssl_channel_credentials(), options=CHANNEL_OPTIONS)
               if target.startswith("https://") else grpc.insecure_channel(address, options=CHANNEL_OPTIONS))
    metadata = []
    if api_key:
        metadata.append(("authorization", f"Bearer {api_key}"))
    return grpc.intercept_channel(channel, _MetadataInterceptor(metadata)) if metadata else channel


def load_credentials(path: str, key_name: str) -> Tuple[str, str]:
    """Reads the apphost's credentials.json; returns (the gateway's gRPC address, the API key named `key_name`)."""
    with open(path, encoding="utf-8") as file:
        document = json.load(file)
    for key in document.get("keys", []):
        if key.get("name") == key_name:
            return document.get("gateway_grpc", ""), key["key"]
    names = ", ".join(k.get("name", "?") for k in document.get("keys", []))
    raise KeyError(f"no key named {key_name!r} in {path} (it has: {names})")


# ------------------------------------------------------------------------------------ dispatch stream

MAX_STREAM_SLOTS = 500  # DispatchOpen.slots and DispatchCapacity.slots: at most 500


class _Answer:
    """A request on a dispatch stream, waiting for its DispatchAck (the same `.result()` as a unary call's future)."""

    def __init__(self, stream: "DispatchStream", field: str, task_id: str, timeout: float):
        self._stream = stream
        self.field = field
        self.task_id = task_id
        self._deadline = time.monotonic() + timeout
        self._done = threading.Event()
        self._ack = None
        self._error: Optional[StreamCallError] = None

    def resolve(self, ack=None, error: Optional[StreamCallError] = None) -> None:
        self._ack, self._error = ack, error
        self._done.set()

    def result(self):
        """The ack of an accepted request. Raises StreamCallError: the ack's refusal (its code, message and reason,
        as the unary call would have failed), UNAVAILABLE when the stream broke before the answer, DEADLINE_EXCEEDED
        when no answer came in time — then the stream is given up, as a call that outlived its deadline would be."""
        if not self._done.wait(max(0.0, self._deadline - time.monotonic())):
            self._stream.abandon(f"no answer to a {self.field} of task {self.task_id} in time")
            raise StreamCallError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                  f"the dispatch stream did not answer the {self.field} in time")
        if self._error is not None:
            raise self._error
        ack = self._ack
        if not ack.accepted:
            raise StreamCallError(status_code(ack.code or grpc.StatusCode.UNKNOWN.value[0]), ack.message, ack.reason)
        return ack


class DispatchStream:
    """One QueueService.Dispatch call: the queue pushes tasks (leased and started) up to the stream's slots; the
    worker sends complete, fail, progress, extend_lease and release on it, each answered by an ack with its
    request_id (`request` returns an _Answer to wait on).

    Slots: the queue counts a pushed task against the stream until an outcome or a release of it arrives on the
    stream. The slot count sent is `max_tasks` minus the handlers running for tasks that did not come from this
    stream (a stream opened again while handlers of the last one still run), and with `once`, no more than the
    tasks still allowed on top of those the queue counts. A smaller count goes out before the outcome that would
    free a slot, so the queue never pushes more than the worker takes.

    Requests waiting when the stream ends fail as UNAVAILABLE (transient): the caller sends them again, on the next
    stream or with the unary call — the queue takes a repeat with the same fencing token without doing anything
    twice. A request left unanswered for its deadline makes the worker give the stream up (and open another).
    """

    def __init__(self, worker: "Worker"):
        self._worker = worker
        self._lock = threading.Lock()
        self._requests: "queue_module.SimpleQueue" = queue_module.SimpleQueue()
        self._answers: Dict[int, _Answer] = {}
        self._next_request = 0
        self._call = None
        self.pushed: Set[str] = set()  # tasks pushed on this stream with no outcome or release sent on it yet
        self.slots = 0                 # the slot count the queue was last told
        self.ended = threading.Event()
        self.error: Optional[grpc.RpcError] = None  # how it ended (None: the queue ended it with OK)
        self.answered = False          # the queue sent something on it
        self.half_closed = False
        self.opened_at = 0.0

    @property
    def usable(self) -> bool:
        """Requests may go on it: open (or opening), not ended, not closing."""
        return not self.ended.is_set() and not self.half_closed

    def open(self, slots: int) -> None:
        worker = self._worker
        self.slots = slots
        self.opened_at = time.monotonic()
        self._requests.put(queue_pb2.DispatchRequest(open=queue_pb2.DispatchOpen(
            worker_id=worker.worker_id, task_types=sorted(worker.handlers), slots=slots,
            lease_duration=_duration(worker.lease_duration))))
        # Not wait_for_ready: opened while the gateway is unreachable, the stream fails at once (and is opened again
        # with backoff) rather than taking requests it cannot send — an outcome on it would wait for its deadline, not
        # fail and be retried, journaled, the worker offline, within the contract's 10 s. The heartbeat stream (which
        # does wait) keeps gRPC polling the reconnection.
        self._call = worker.queue.Dispatch(self._outgoing(), wait_for_ready=False)
        threading.Thread(target=self._read, name="dispatch", daemon=True).start()

    def request(self, field: str, message: Any, task_id: str, timeout: float) -> _Answer:
        """Sends `complete`, `fail`, `progress`, `extend_lease` or `release`; raises StreamCallError (UNAVAILABLE) when
        the stream cannot take it any more."""
        answer = _Answer(self, field, task_id, timeout)
        with self._lock:
            if not self.usable:
                raise StreamCallError(grpc.StatusCode.UNAVAILABLE, "the dispatch stream is closed")
            self._next_request += 1
            self._answers[self._next_request] = answer
            if field in ("complete", "fail", "release") and task_id in self.pushed:
                self.pushed.discard(task_id)
                self._update_capacity_locked()  # a smaller count first: the outcome frees the slot on arrival
            self._requests.put(queue_pb2.DispatchRequest(request_id=self._next_request, **{field: message}))
        return answer

    def update_capacity(self) -> None:
        """Tells the queue the slot count the worker wants now, if it changed."""
        with self._lock:
            if self.usable:
                self._update_capacity_locked()

    def _update_capacity_locked(self) -> None:
        target = self._worker._stream_slots(self)
        if target != self.slots:
            self.slots = target
            self._requests.put(queue_pb2.DispatchRequest(capacity=queue_pb2.DispatchCapacity(slots=target)))

    def accept(self, context: TaskContext) -> bool:
        """Counts a pushed task against the stream and the worker's running tasks, together (one count of slots sees
        both or neither). False when it is more than the worker runs (a lowered slot count crossed it on the wire, or
        `once`): the caller gives it back at once."""
        worker = self._worker
        with self._lock:
            with worker._slots:
                self.pushed.add(context.task_id)
                worker._running[context.task_id] = context
                return (len(worker._running) <= worker.max_tasks
                        and (worker.once is None or worker.stats.ended + len(worker._running) <= worker.once))

    def abandon(self, reason: str) -> None:
        """Gives the stream up at once (cancels the call); its waiting requests fail as UNAVAILABLE."""
        call = self._call
        if call is not None and not self.ended.is_set():
            log.info("dispatch stream given up: %s", reason)
            call.cancel()

    def close(self, timeout: float) -> None:
        """Half-closes the stream (the worker sends nothing more) and waits up to `timeout` for the queue to end it."""
        with self._lock:
            self.half_closed = True
            self._requests.put(None)
        if self._call is not None and not self.ended.wait(timeout):
            self._call.cancel()
            self.ended.wait(1.0)

    def _outgoing(self):
        while True:
            request = self._requests.get()
            if request is None:
                return
            yield request

    def _read(self) -> None:
        worker = self._worker
        error: Optional[grpc.RpcError] = None
        try:
            for message in self._call:
                self.answered = True
                kind = message.WhichOneof("kind")
                if kind == "ack":
                    with self._lock:
                        answer = self._answers.pop(message.ack.request_id, None)
                    if answer is not None:
                        answer.resolve(ack=message.ack)
                elif kind == "task":
                    worker._on_pushed(self, message.task)
                worker._outcomes.call_answered()
        except grpc.RpcError as failure:
            error = failure
        except Exception as failure:  # pylint: disable=broad-except  # a bug here must not leave requests waiting
            log.exception("dispatch stream reader failed")
            error = StreamCallError(grpc.StatusCode.UNKNOWN, f"{type(failure).__name__}: {failure}")
        finally:
            self._end(error)

    def _end(self, error: Optional[grpc.RpcError]) -> None:
        with self._lock:
            if self.ended.is_set():
                return
            self.error = error
            self.ended.set()
            answers, self._answers = sorted(self._answers.items()), {}
            self._requests.put(None)  # ends the request iterator gRPC reads from
        why = describe(error) if error is not None else "ended by the queue"
        if answers and error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT:
            # The queue reads in order and answers everything before a message it refuses as bad input, then ends the
            # stream: the first request left unanswered is the bad one, refused for good as its unary call would be.
            _, bad = answers.pop(0)
            bad.resolve(error=StreamCallError(grpc.StatusCode.INVALID_ARGUMENT, error.details() or "", reason_of(error)))
        for _, answer in answers:
            answer.resolve(error=StreamCallError(
                grpc.StatusCode.UNAVAILABLE, f"the dispatch stream ended before the queue answered ({why})"))
        self._worker._dispatch_wake.set()


# ------------------------------------------------------------------------------------ transport

class _QueueTransport:
    """The OutcomeDispatcher's way to the queue: the dispatch stream while one is open, else CompleteTasks,
    FailTask, ReportProgress; and the offline probe (unary calls: offline, no stream is open)."""

    def __init__(self, worker: "Worker"):
        self._worker = worker
        self._batch_supported = True

    def complete(self, outcomes: List[Outcome]) -> List[Optional[str]]:
        stream = self._worker._usable_stream()
        if stream is not None:
            return self._complete_on_stream(stream, outcomes)
        queue, timeout = self._worker.queue, self._worker.attempt_timeout
        if self._batch_supported:
            try:
                response = queue.CompleteTasks(queue_pb2.CompleteTasksRequest(completions=[
                    queue_pb2.TaskCompletion(task_id=o.task_id, fencing_token=o.fencing_token, result=o.result or "")
                    for o in outcomes]), timeout=timeout)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
                log.info("CompleteTasks is not available (%s); completing one task a call", describe(error))
                self._batch_supported = False
            else:
                refusals: List[Optional[str]] = [None] * len(outcomes)
                for index, result in enumerate(response.results[:len(outcomes)]):
                    if not result.accepted:
                        refusals[index] = _refusal_text(result)
                return refusals
        refusals = []
        for outcome in outcomes:
            try:
                queue.CompleteTask(queue_pb2.CompleteTaskRequest(
                    task_id=outcome.task_id, fencing_token=outcome.fencing_token, result=outcome.result or ""),
                    timeout=timeout)
                refusals.append(None)
            except grpc.RpcError as error:
                if is_transient(error):
                    raise  # the whole unit is tried again; repeats of accepted completions change nothing
                refusals.append(describe(error))
        return refusals

    def _complete_on_stream(self, stream: DispatchStream, outcomes: List[Outcome]) -> List[Optional[str]]:
        """One `complete` a task on the stream; a refusal is that completion's answer, a transient failure (the stream
        broke, no answer, or a transient code in an ack) fails the unit: it is sent again whole (repeats change nothing)."""
        answers = [stream.request("complete", queue_pb2.CompleteTaskRequest(
            task_id=o.task_id, fencing_token=o.fencing_token, result=o.result or ""), o.task_id,
            self._worker.attempt_timeout) for o in outcomes]
        refusals: List[Optional[str]] = []
        again: List[int] = []
        transient: Optional[grpc.RpcError] = None
        for index, answer in enumerate(answers):
            try:
                answer.result()
                refusals.append(None)
            except grpc.RpcError as error:
                if is_transient(error):
                    transient = transient or error
                    again.append(index)
                refusals.append(describe(error))
        if transient is not None:
            if len(again) == len(outcomes):
                raise transient  # nothing answered: the dispatcher tries the unit again
            # Some were answered: the rest go again at once (the stream broke: on the unary calls).
            for index, refusal in zip(again, self.complete([outcomes[i] for i in again])):
                refusals[index] = refusal
        return refusals

    def fail(self, outcome: Outcome) -> str:
        error = outcome.error or {}
        request = queue_pb2.FailTaskRequest(
            task_id=outcome.task_id, fencing_token=outcome.fencing_token,
            error=common_pb2.ErrorDetail(code=str(error.get("code") or "TASK_FAILED"),
                                         message=str(error.get("message") or "")[:4096],
                                         retryable=bool(error.get("retryable")),
                                         details=dict(error.get("details") or {})))
        if outcome.retry_after is not None:
            request.retry_after.CopyFrom(_duration(outcome.retry_after))
        stream = self._worker._usable_stream()
        if stream is not None:
            response = stream.request("fail", request, outcome.task_id, self._worker.attempt_timeout).result()
        else:
            response = self._worker.queue.FailTask(request, timeout=self._worker.attempt_timeout)
        return "will retry" if response.will_retry else queue_pb2.TaskStatus.Name(response.task.status)

    def progress(self, outcome: Outcome) -> None:
        progress = outcome.progress or {}
        request = queue_pb2.ReportProgressRequest(
            task_id=outcome.task_id, fencing_token=outcome.fencing_token, percent=int(progress.get("percent", 0)),
            message=str(progress.get("message", "")))
        stream = self._worker._usable_stream()
        if stream is not None:
            stream.request("progress", request, outcome.task_id, self._worker.attempt_timeout).result()
        else:
            self._worker.queue.ReportProgress(request, timeout=self._worker.attempt_timeout)

    def probe(self, journaled: List[Tuple[str, int]]) -> bool:
        """Extends the leases of the tasks the worker holds — running (with their latest progress when the queue
        has not recorded it) or journaled; with none, a unary Heartbeat. True when the gateway answered at all
        (a refusal is an answer): the network is back."""
        worker = self._worker
        held = worker._held()
        running = {c.task_id for c in held}
        others = list(dict.fromkeys(t for t in journaled if t[0] not in running))
        if held or others:
            return worker._extend_leases(held, others, probing=True)
        if not worker.worker_id:
            return True  # nothing to ask about yet: the sync itself finds out
        try:
            worker.registry.Heartbeat(worker._beat(), timeout=worker.attempt_timeout, wait_for_ready=True)
        except grpc.RpcError as error:
            return not is_transient(error)
        return True


def _refusal_text(result: "queue_pb2.TaskCompletionResult") -> str:
    """`CODE: message [REASON]` of a completion a CompleteTasks batch refused."""
    code = _STATUS_NAMES.get(result.code, str(result.code))
    return f"{code}: {result.message}" + (f" [{result.reason}]" if result.reason else "")


_STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


# -------------------------------------------------------------------------------------- worker

Handler = Callable[[TaskContext], Any]
StateListener = Callable[[str, str, str], None]


class Worker:
    """Registers, heartbeats, leases and runs tasks until stopped, drained, or `once` tasks are done."""

    def __init__(self, target: str, handlers: Dict[str, Handler], api_key: Optional[str] = None,
                 name: Optional[str] = None, max_tasks: int = 4, lease_duration: float = 30.0,
                 poll_wait: float = 20.0, shutdown_grace: float = 20.0, once: Optional[int] = None,
                 registry_target: Optional[str] = None,
                 version: str = "1.0.0", rpc_timeout: float = 10.0,
                 journal_dir: str = DEFAULT_JOURNAL_DIR,
                 on_state_change: Optional[StateListener] = None,
                 retry_policy: Optional[RetryPolicy] = None,
                 batch_size: int = 100, batch_delay: float = 0.005,
                 heartbeat_stream: bool = True, dispatch_stream: bool = True):
        """
        target: the gateway (`registry_target`: another gateway address for registry calls, rarely needed).
        handlers: task type -> handler; the types are the worker's capabilities.
        max_tasks: tasks run at once; lease_duration: seconds per lease (extended while running);
        poll_wait: long-poll of LeaseTasks (<= 30 s); shutdown_grace: how long stopping waits for handlers;
        once: stop after this many tasks have ended (completed, failed or abandoned).
        journal_dir: where the offline journal `<name>.journal` lives (relative: to the working directory);
        on_state_change(old, new, reason): called on every connection state transition (connected,
        retrying, offline, syncing), from a worker thread — keep it short;
        retry_policy: immediate retries, backoff and the 10 s before going offline (README defaults);
        batch_size / batch_delay: completions finishing together go out as one CompleteTasks of at most
        batch_size, sent batch_delay seconds after the first of them at the latest;
        heartbeat_stream: False beats with unary Heartbeat calls only;
        dispatch_stream: True (the default) takes tasks from the queue's dispatch stream (QueueService.Dispatch) and
        sends outcomes, progress, lease extensions and releases on it; False leases with LeaseTasks long polls and
        unary calls only. A queue without the stream (UNIMPLEMENTED) makes the worker fall back to those by itself.
        """
        if not handlers:
            raise ValueError("at least one handler is needed")
        self.handlers = dict(handlers)
        self.name = name or f"py-{socket.gethostname()}-{os.getpid()}"
        self.max_tasks = max(1, max_tasks)
        self.lease_duration = lease_duration
        self.poll_wait = min(poll_wait, 30.0)
        self.shutdown_grace = shutdown_grace
        self.once = once
        self.version = version
        self.rpc_timeout = rpc_timeout
        self.attempt_timeout = min(rpc_timeout, 5.0)  # one try of an outcome, a probe or progress
        self.retry_policy = retry_policy or RetryPolicy()
        self.heartbeat_stream = heartbeat_stream
        self.dispatch_stream = dispatch_stream  # turned off when the queue answers UNIMPLEMENTED
        self.stats = WorkerStats()

        self._channel = open_channel(target, api_key)
        self._registry_channel = (open_channel(registry_target, api_key)
                                  if registry_target and registry_target != target else self._channel)
        self.queue = queue_pb2_grpc.QueueServiceStub(self._channel)
        self.checkpoints = checkpoint_pb2_grpc.CheckpointServiceStub(self._channel)
        self.registry = registry_pb2_grpc.RegistryServiceStub(self._registry_channel)

        self.worker_id = ""
        self.session_epoch = 0
        self.heartbeat_interval = 5.0

        self._stopping = threading.Event()   # lease no more (signal, `once` reached, drained)
        self._draining = threading.Event()   # the registry asked us to drain
        self._finished = threading.Event()   # shutdown done: background loops end
        self._leasing_allowed = threading.Event()  # connected (or retrying): set; offline or syncing: clear
        self._leasing_allowed.set()
        self._progress_reported = threading.Event()  # wakes the lease keeper to send progress
        self._slots = threading.Condition()  # guards _running; notified when a task ends
        self._running: Dict[str, TaskContext] = {}
        self._lease_call = None
        self._stream: Optional[DispatchStream] = None  # the current dispatch stream, if any
        self._dispatch_wake = threading.Event()  # slots, stop, drain, the connection or the stream changed
        self._beat_now = threading.Event()       # the next heartbeat goes at once
        self._heartbeat_call = None
        self._heartbeat_broken = False
        self._threads: List[threading.Thread] = []

        self.connection = ConnectionStateMachine(CONNECTED)
        self.connection.subscribe(self._on_connection_change)
        if on_state_change is not None:
            self.connection.subscribe(on_state_change)
        self.journal = OutcomeJournal(journal_dir, self.name)
        self._outcomes = OutcomeDispatcher(_QueueTransport(self), self.journal, self.connection, self.stats,
                                           policy=self.retry_policy,
                                           batcher=OutcomeBatcher(max_batch=batch_size, max_delay=batch_delay))

    @property
    def connection_state(self) -> str:
        """connected, retrying, offline or syncing (README, "Connection state")."""
        return self.connection.state

    # ------------------------------------------------------------------------------- control

    def stop(self, reason: str = "stop requested") -> None:
        """Asks the worker to stop, from any thread; `run` then shuts down in order. From a signal handler, call it on
        another thread (as install_signal_handlers does): it sets Events the main thread may hold the lock of."""
        if not self._stopping.is_set():
            log.info("stopping: %s", reason)
        self._stopping.set()
        self._leasing_allowed.set()  # wake the lease loop so it sees the stop
        self._dispatch_wake.set()
        call = self._lease_call
        if call is not None:
            call.cancel()  # end a long poll at once

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM stop the worker gracefully; a second one skips the rest of the grace period."""
        def on_signal(signum, _frame):
            if self._stopping.is_set():
                self.shutdown_grace = 0
            # A handler runs on the main thread between two bytecodes, maybe while that thread holds the lock of an
            # Event that stop() sets (the dispatch loop waits on one): set them from another thread.
            threading.Thread(target=self.stop, args=(f"signal {signal.Signals(signum).name}",), name="stop",
                             daemon=True).start()
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    # ------------------------------------------------------------------------------ the life

    def run(self) -> WorkerStats:
        """Runs until stopped; always delivers or journals its outcomes, releases what it still holds and
        deregisters before returning."""
        self._start_delivery()
        try:
            self._register()
        except BaseException:
            self._outcomes.close(timeout=1.0)
            self._close_channels()
            raise
        self._start_thread(self._heartbeat_loop, "heartbeat")
        self._start_thread(self._lease_keeper_loop, "lease-keeper")
        try:
            self._dispatch_loop()
        finally:
            self._shutdown()
        return self.stats

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _start_delivery(self) -> None:
        """Loads the journal an earlier run left; if it has outcomes, the worker starts offline and syncs them
        before it leases anything."""
        try:
            entries = self.journal.load()
        except OSError as error:
            log.error("journal %s could not be read: %s", self.journal.path, error)
            entries = []
        outcomes = sum(1 for e in entries if e.get("kind") != "progress")
        if entries:
            # Where the last process left off: offline, with a journal to sync before leasing anything.
            self.connection.restore(OFFLINE)
            self._leasing_allowed.clear()
            log.info("journal %s holds %d outcome(s) from an earlier run: replaying them before leasing",
                     self.journal.path, outcomes)
        self._outcomes.start()
        if entries:
            # Replay before registering when the gateway answers; leasing waits for the journal in any case.
            self._outcomes.first_sync_done.wait(self.rpc_timeout * 3)

    def _register(self) -> None:
        request = registry_pb2.RegisterWorkerRequest(
            name=self.name, type=registry_pb2.WORKER_TYPE_STANDALONE, capabilities=sorted(self.handlers),
            metadata=registry_pb2.WorkerMetadata(version=self.version, max_concurrent_tasks=self.max_tasks,
                                                 tags={"language": "python"}))
        deadline = time.monotonic() + 60
        while True:
            try:
                # wait_for_ready: while the gateway is unreachable the call waits for it (up to rpc_timeout)
                # rather than failing at once on a channel that would notice its return only seconds later.
                response = self.registry.RegisterWorker(request, timeout=self.rpc_timeout, wait_for_ready=True)
                self._outcomes.gateway_answered()
                break
            except grpc.RpcError as error:
                # The suite may be starting, or a service restarting: retry while waiting helps.
                if not is_transient(error) or time.monotonic() > deadline or self._stopping.is_set():
                    raise
                log.warning("register: %s; retrying", describe(error))
                self._stopping.wait(1.0)
        self.worker_id = response.worker.id
        self.session_epoch = response.worker.session_epoch
        interval = response.heartbeat_interval.ToTimedelta().total_seconds()
        self.heartbeat_interval = interval if interval > 0 else 5.0
        log.info("registered %s as %s (session %d, heartbeat every %.1fs, types %s)", self.name, self.worker_id,
                 self.session_epoch, self.heartbeat_interval, ", ".join(sorted(self.handlers)))

    def _on_connection_change(self, old: str, new: str, reason: str) -> None:
        if new in (CONNECTED, RETRYING):
            self._leasing_allowed.set()
        else:
            self._leasing_allowed.clear()
            call = self._lease_call
            if call is not None:
                call.cancel()  # a long poll waiting for the gateway must not lease before the journal is replayed
            stream = self._stream
            if stream is not None and stream.usable:
                stream.abandon(f"connection {new}")  # nothing is pushed until the journal is replayed
        self._dispatch_wake.set()

    # ------------------------------------------------------------------------------ dispatch

    def _usable_stream(self) -> Optional[DispatchStream]:
        """The dispatch stream requests may go on now, or None (then the unary calls)."""
        stream = self._stream
        return stream if stream is not None and stream.usable else None

    def _stream_slots(self, stream: DispatchStream) -> int:
        """The slot count `stream` should have now (see DispatchStream)."""
        if self._stopping.is_set() or self._draining.is_set():
            return 0
        with self._slots:
            others = sum(1 for c in self._running.values() if c.stream is not stream)
            slots = self.max_tasks - others
            if self.once is not None:
                slots = min(slots, len(stream.pushed) + self.once - self.stats.ended - len(self._running))
        return max(0, min(MAX_STREAM_SLOTS, slots))

    def _wait_dispatch(self, timeout: float) -> None:
        self._dispatch_wake.wait(timeout)
        self._dispatch_wake.clear()

    def _dispatch_loop(self) -> None:
        """Takes the tasks the queue pushes on a dispatch stream, opened again (with backoff) when it breaks, until
        stopped, drained or `once` is done. Leases with LeaseTasks instead when told to (`dispatch_stream=False`) or
        when the queue has no stream (UNIMPLEMENTED). On stop, the stream is told 0 slots and stays open: the
        shutdown's outcomes and releases go on it."""
        failures = 0
        while not self._stopping.is_set():
            if not self.dispatch_stream:
                self._lease_loop()
                return
            if not self._leasing_allowed.is_set():
                self._leasing_allowed.wait(0.5)  # offline or syncing: nothing is pushed until the journal is replayed
                continue
            if self._leasing_over():
                break
            stream = DispatchStream(self)
            slots = self._stream_slots(stream)
            if slots == 0:
                self._wait_dispatch(0.5)  # every slot taken by handlers of an earlier stream (or of long polls)
                continue
            stream.open(slots)
            self._stream = stream  # once open: whoever finds it can give it up
            while not stream.ended.is_set():
                self._wait_dispatch(1.0)
                if self._stopping.is_set() or not self._leasing_allowed.is_set():
                    break
                stream.update_capacity()
                if self._leasing_over():
                    break
            if self._stopping.is_set():
                stream.update_capacity()  # 0: nothing more is pushed
                return
            if not stream.ended.is_set():  # offline or syncing: the listener gave it up
                stream.abandon("leasing paused")
                continue
            error = stream.error
            if error is not None and error.code() == grpc.StatusCode.UNIMPLEMENTED:
                log.info("the queue has no dispatch stream (%s); leasing with LeaseTasks long polls", describe(error))
                self.dispatch_stream = False
                self._outcomes.call_answered()
                continue
            if error is not None and reason_of(error) == "WORKER_DRAINING":
                self._outcomes.call_answered()
                self._drain("the queue says this worker is draining")
                continue
            if error is not None and reason_of(error) == "WORKER_OFFLINE":
                self._beat_now.set()  # the registry lost the worker's heartbeat (an outage): beat at once
            if stream.answered or time.monotonic() - stream.opened_at > self.retry_policy.budget:
                failures = 0  # it worked for a while
            failures += 1
            if error is not None and is_transient(error):
                self._outcomes.call_failed(f"{describe(error)} (Dispatch)")
            elif error is not None and error.code() != grpc.StatusCode.CANCELLED:
                self._outcomes.call_answered()  # a refusal (e.g. WORKER_OFFLINE until the next beat): the gateway is there
            wait = max(0.1, self.retry_policy.backoff(failures - 1))
            (log.warning if failures == 1 else log.debug)(
                "dispatch stream ended: %s; opening it again in %.1fs",
                describe(error) if error is not None else "ended by the queue", wait)
            self._stopping.wait(wait)

    def _leasing_over(self) -> bool:
        """Drained, or `once` handlers have ended and their outcomes are delivered: stops the worker (True)."""
        with self._slots:
            if self._running:
                return False
            if self._draining.is_set():
                why = "drained"
            elif self.once is not None and self.stats.ended >= self.once and not self._outcomes.pending:
                why = f"{self.once} task(s) done"
            else:
                return False
        self._stopping.set()
        log.info("stopping: %s", why)
        return True

    def _on_pushed(self, stream: DispatchStream, task: "queue_pb2.Task") -> None:
        """A task the queue pushed (on the stream's reader thread, which must not wait for acks)."""
        context = TaskContext(self, task)
        context.stream = stream
        allowed = stream.accept(context)
        if self._stopping.is_set() or self._draining.is_set() or not allowed:
            why = ("worker stopping" if self._stopping.is_set() else "worker draining" if self._draining.is_set()
                   else "pushed beyond the worker's slots")
            threading.Thread(target=self._release, args=(context, why), name=f"release-{task.id[:8]}",
                             daemon=True).start()
            return
        threading.Thread(target=self._run_task, args=(context,), name=f"task-{task.id[:8]}", daemon=True).start()

    def _lease_loop(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if not self._leasing_allowed.is_set():
                self._leasing_allowed.wait(0.5)  # offline or syncing: lease nothing until the journal is replayed
                continue
            capacity = self._wait_for_capacity()
            if capacity == 0:
                continue
            request = queue_pb2.LeaseTasksRequest(
                worker_id=self.worker_id, task_types=sorted(self.handlers), max_tasks=capacity,
                lease_duration=_duration(self.lease_duration), wait=_duration(self.poll_wait), start=True)
            # wait_for_ready: while the gateway is unreachable the call waits for it (instead of failing at
            # once) and leases the moment it is back; going offline cancels it (see _on_connection_change).
            call = self.queue.LeaseTasks.future(request, timeout=self.poll_wait + self.rpc_timeout, wait_for_ready=True)
            self._lease_call = call
            try:
                # Stopped, drained or gone offline between the checks above and now: the listener that
                # cancels self._lease_call may have looked before it was set.
                if self._stopping.is_set() or self._draining.is_set() or not self._leasing_allowed.is_set():
                    call.cancel()
                response = call.result()
                self._outcomes.call_answered()
                if failures:
                    log.info("leasing again after %d failed attempt(s)", failures)
                failures = 0
            except grpc.FutureCancelledError:
                continue  # stopping, draining or offline: the loop decides
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.CANCELLED:
                    continue
                if reason_of(error) == "WORKER_DRAINING":
                    self._drain("the queue says this worker is draining")
                    continue
                if is_transient(error):
                    self._outcomes.call_failed(f"{describe(error)} (LeaseTasks)")
                else:
                    self._outcomes.call_answered()  # e.g. WORKER_OFFLINE until the next heartbeat: the gateway is there
                failures += 1
                wait = max(0.1, self.retry_policy.backoff(failures - 1))
                (log.warning if failures == 1 else log.debug)("lease: %s; retrying in %.1fs", describe(error), wait)
                self._stopping.wait(wait)
                continue
            finally:
                self._lease_call = None

            for task in response.tasks:
                context = TaskContext(self, task)
                with self._slots:
                    self._running[task.id] = context
                if self._stopping.is_set():
                    self._release(context, "worker stopping")
                else:
                    threading.Thread(target=self._run_task, args=(context,), name=f"task-{task.id[:8]}",
                                     daemon=True).start()

    def _wait_for_capacity(self) -> int:
        """Free slots to lease into; 0 (after a short wait) when there is nothing to lease for now."""
        with self._slots:
            while len(self._running) >= self.max_tasks and not self._stopping.is_set():
                self._slots.wait(1.0)
            if self._stopping.is_set():
                return 0
            capacity = self.max_tasks - len(self._running)
            if self.once is not None:
                capacity = min(capacity, self.once - self.stats.ended - len(self._running))
            if self._draining.is_set() or capacity <= 0:
                if self._running:
                    self._slots.wait(1.0)
                elif not self._draining.is_set() and self._outcomes.pending:
                    # `once`: the tasks have ended; stop when their outcomes are delivered (offline: synced).
                    self._slots.wait(0.1)
                else:
                    self._stopping.set()
                    log.info("stopping: %s", "drained" if self._draining.is_set() else f"{self.once} task(s) done")
                return 0
            return capacity

    def _run_task(self, context: TaskContext) -> None:
        task = context.task
        try:
            if task.status != queue_pb2.TASK_STATUS_RUNNING:  # a queue that ignores `start`: start it ourselves
                try:
                    self.queue.StartTask(queue_pb2.StartTaskRequest(task_id=task.id, fencing_token=task.fencing_token),
                                         timeout=self.rpc_timeout)
                except grpc.RpcError as error:
                    log.warning("task %s not started: %s", task.id, describe(error))
                    self.stats.add("abandoned")
                    return
            log.info("task %s (%s) started, token %d", task.id, task.type, task.fencing_token)
            try:
                result = self.handlers[task.type](context)
            except TaskFailed as failure:
                self._fail(context, failure.code, failure.message, failure.retryable, failure.details, failure.retry_after)
            except Exception as error:  # pylint: disable=broad-except
                if context.lost:
                    self._abandon(context)
                elif context.cancelled and self._stopping.is_set():
                    self._release(context, "worker stopping")  # the handler gave up because we asked
                else:
                    log.exception("handler of task %s raised", task.id)
                    self._fail(context, "UNHANDLED_EXCEPTION", f"{type(error).__name__}: {error}", True)
            else:
                try:
                    text = json.dumps(result)
                except (TypeError, ValueError) as error:
                    self._fail(context, "RESULT_NOT_SERIALIZABLE", f"the handler's result is not JSON: {error}", False)
                else:
                    self._complete(context, text)
        finally:
            context.done = True
            with self._slots:
                self._running.pop(task.id, None)
                self.stats.add("ended")
                self._slots.notify_all()
            self._dispatch_wake.set()

    def _complete(self, context: TaskContext, result: str) -> None:
        context.done = True
        if context.lost:
            return self._abandon(context)
        self._outcomes.submit(Outcome.complete(context.task_id, context.fencing_token, result,
                                               progress=context.progress if context.progress_pending else None))

    def _fail(self, context: TaskContext, code: str, message: str, retryable: bool,
              details: Optional[Dict[str, str]] = None, retry_after: Optional[float] = None) -> None:
        context.done = True
        if context.lost:
            return self._abandon(context)
        self._outcomes.submit(Outcome.fail(context.task_id, context.fencing_token, code, message[:4096], retryable,
                                           details, retry_after,
                                           progress=context.progress if context.progress_pending else None))

    def _abandon(self, context: TaskContext) -> None:
        log.info("task %s: no outcome reported (%s)", context.task_id, context.cancel_reason)
        self.stats.add("abandoned")
        stream = context.stream
        if stream is not None and stream.usable and context.task_id in stream.pushed:
            # The queue counts the task against the stream until an outcome or a release of it arrives there; the
            # lease is gone, so the release is refused (and changes nothing), but it frees the slot.
            try:
                stream.request("release", queue_pb2.ReleaseTaskRequest(
                    task_id=context.task_id, fencing_token=context.fencing_token, reason="lease lost"),
                    context.task_id, self.attempt_timeout)
            except StreamCallError:
                pass  # the stream ended: its slots went with it

    def _release(self, context: TaskContext, reason: str) -> None:
        context.lose(f"released: {reason}")  # a handler that still finishes reports nothing
        request = queue_pb2.ReleaseTaskRequest(task_id=context.task_id, fencing_token=context.fencing_token,
                                               reason=reason)
        try:
            stream = context.stream if context.stream is not None and context.stream.usable else self._usable_stream()
            try:
                if stream is None:
                    raise StreamCallError(grpc.StatusCode.UNAVAILABLE, "no dispatch stream")
                stream.request("release", request, context.task_id, self.attempt_timeout).result()
            except StreamCallError as error:
                if not is_transient(error):
                    raise
                self.queue.ReleaseTask(request, timeout=self.attempt_timeout)  # no stream (any more): the unary call
            self.stats.add("released")
            log.info("task %s released (%s)", context.task_id, reason)
        except grpc.RpcError as error:
            log.warning("task %s not released: %s", context.task_id, describe(error))
        finally:
            with self._slots:
                self._running.pop(context.task_id, None)
                self._slots.notify_all()

    # ------------------------------------------------------------------------------- leases

    def _held(self) -> List[TaskContext]:
        with self._slots:
            return [c for c in self._running.values() if not c.lost]

    def _extend_leases(self, contexts: List[TaskContext], others: List[Tuple[str, int]] = (),
                       probing: bool = False) -> bool:
        """Extends leases at once (a task's unrecorded progress goes with its extension); True when the
        gateway answered any of them. A lease the queue says is gone tells its handler.

        probing (offline): the calls wait for the channel to connect, up to attempt_timeout. A call that
        fails at once on a channel in TRANSIENT_FAILURE leaves gRPC nothing to poll the reconnection with:
        grpc-python would notice the gateway is back only seconds later."""
        calls = []
        stream = None if probing else self._usable_stream()  # offline, the probes are unary calls

        def send(field: str, request: Any, unary: Any, task_id: str) -> Any:
            if stream is not None:
                try:
                    return stream.request(field, request, task_id, self.attempt_timeout)
                except StreamCallError:
                    pass  # the stream ended just now: the unary call
            return unary.future(request, timeout=self.attempt_timeout, wait_for_ready=probing)

        for context in contexts:
            if context.progress_pending:
                version, progress = context.progress_version, context.progress
                call = send("progress", queue_pb2.ReportProgressRequest(
                    task_id=context.task_id, fencing_token=context.fencing_token,
                    percent=progress["percent"], message=progress["message"],
                    lease_duration=_duration(self.lease_duration)), self.queue.ReportProgress, context.task_id)
                calls.append((context, call, version))
            else:
                call = send("extend_lease", queue_pb2.ExtendLeaseRequest(
                    task_id=context.task_id, fencing_token=context.fencing_token,
                    lease_duration=_duration(self.lease_duration)), self.queue.ExtendLease, context.task_id)
                calls.append((context, call, 0))
        if others:
            for task_id, token in others:
                calls.append((None, self.queue.ExtendLease.future(queue_pb2.ExtendLeaseRequest(
                    task_id=task_id, fencing_token=token, lease_duration=_duration(self.lease_duration)),
                    timeout=self.attempt_timeout, wait_for_ready=probing), 0))
        if not calls:
            return True  # nothing to extend: let the sync itself find out
        answered, transient = False, None
        for context, call, version in calls:
            try:
                call.result()
            except grpc.RpcError as error:
                if is_transient(error):
                    transient = transient or error
                    if context is not None and not context.done:
                        log.debug("task %s: lease not extended: %s", context.task_id, describe(error))
                    continue
                answered = True
                if context is None or context.done:
                    continue  # the handler ended meanwhile (its outcome went after this call): nothing to tell
                if _lease_is_gone(error):
                    context.lose(f"lease lost: {describe(error)}")
                    log.warning("task %s: %s", context.task_id, context.cancel_reason)
                else:
                    log.warning("task %s: lease not extended: %s", context.task_id, describe(error))
                continue
            answered = True
            if context is not None:
                context.last_extended = time.monotonic()
                context.progress_recorded = max(context.progress_recorded, version)
        if not probing:  # (offline, the dispatcher judges its own probes)
            if answered:
                self._outcomes.call_answered()
            elif transient is not None:
                self._outcomes.call_failed(f"{describe(transient)} (lease extension)")
        return answered

    # --------------------------------------------------------------------- background loops

    def _beat(self) -> "registry_pb2.HeartbeatRequest":
        with self._slots:
            running = list(self._running)
        return registry_pb2.HeartbeatRequest(
            worker_id=self.worker_id, session_epoch=self.session_epoch,
            status=(registry_pb2.WORKER_STATUS_BUSY if len(running) >= self.max_tasks
                    else registry_pb2.WORKER_STATUS_ONLINE),
            running_task_ids=running, load=len(running) / self.max_tasks)

    def _heartbeat_loop(self) -> None:
        """One HeartbeatStream for the worker's life, opened again after a break; unary Heartbeat calls
        when the stream cannot be opened at all."""
        use_stream = self.heartbeat_stream
        failures = 0
        while not self._finished.is_set():
            if use_stream:
                outcome, error = self._heartbeat_stream()
                if outcome in ("finished", "superseded"):
                    return
                if outcome == "unsupported":
                    log.info("heartbeat stream not available (%s); beating with unary calls", describe(error))
                    use_stream = False
                    continue
                failures = 1 if outcome == "ok" else failures + 1
                if failures == 1:
                    self._heartbeat_broken = True
                    log.warning("heartbeat stream broken: %s; opening it again",
                                describe(error) if error is not None else "ended by the server")
                self._finished.wait(min(self.heartbeat_interval, self.retry_policy.backoff_cap(failures + 2)))
                continue
            if not self._unary_beat():
                return
            self._beat_now.clear()
            self._beat_now.wait(self.heartbeat_interval)

    def _heartbeat_stream(self) -> Tuple[str, Optional[grpc.RpcError]]:
        """Runs one stream until it ends: ("finished" | "superseded" | "unsupported" | "broken" | "ok", error).
        "ok": the stream worked for a while and then broke."""
        done = threading.Event()

        def beats():
            while not done.is_set() and not self._finished.is_set():
                yield registry_pb2.HeartbeatStreamRequest(beat=self._beat())
                waited = 0.0
                while (waited < self.heartbeat_interval and not done.is_set() and not self._finished.is_set()
                       and not self._beat_now.is_set()):
                    done.wait(0.25)
                    waited += 0.25
                self._beat_now.clear()

        acknowledged = False
        # wait_for_ready: opened while the gateway is unreachable, the stream waits for it; this waiting call
        # also keeps gRPC polling the reconnection, so every call notices at once when the gateway is back.
        call = self.registry.HeartbeatStream(beats(), wait_for_ready=True)
        self._heartbeat_call = call
        try:
            if self._finished.is_set():
                call.cancel()
            for message in call:
                kind = message.WhichOneof("message")
                if kind == "ack":
                    self._outcomes.gateway_answered()
                    if not acknowledged and self._heartbeat_broken:
                        log.info("heartbeat stream open again")
                        self._heartbeat_broken = False
                    acknowledged = True
                    for command in message.ack.commands:
                        self._on_command(command)
                elif kind == "command":
                    self._on_command(message.command)
            return ("finished" if self._finished.is_set() else ("ok" if acknowledged else "broken")), None
        except grpc.RpcError as error:
            if self._finished.is_set():
                return "finished", None
            if reason_of(error) == "STALE_SESSION":
                self._superseded()
                return "superseded", error
            if not acknowledged and not is_transient(error) and error.code() != grpc.StatusCode.CANCELLED:
                return "unsupported", error
            return ("ok" if acknowledged else "broken"), error
        finally:
            done.set()
            self._heartbeat_call = None

    def _unary_beat(self) -> bool:
        try:
            response = self.registry.Heartbeat(self._beat(), timeout=self.attempt_timeout, wait_for_ready=True)
            self._outcomes.gateway_answered()
            for command in response.commands:
                self._on_command(command)
        except grpc.RpcError as error:
            if reason_of(error) == "STALE_SESSION":
                self._superseded()
                return False
            log.warning("heartbeat: %s", describe(error))
        return True

    def _superseded(self) -> None:
        log.error("heartbeat refused: another process registered %s again and owns it now", self.name)
        self._tell_all("session superseded")
        self.stop("session superseded")

    def _lease_keeper_loop(self) -> None:
        """Sends the progress handlers report (at once, the latest of each task) and extends the leases of
        handlers that have not reported for a third of a lease. Offline, the outcome dispatcher's probes do both."""
        while not self._finished.is_set():
            self._progress_reported.wait(1.0)
            self._progress_reported.clear()
            if self._finished.is_set():
                return
            if self.connection_state in (OFFLINE, SYNCING):
                continue
            now = time.monotonic()
            due = [c for c in self._held()
                   if c.progress_pending or now - c.last_extended >= self.lease_duration / 3]
            if due:
                self._extend_leases(due)
                self._finished.wait(0.05)  # reports arriving meanwhile go out together in the next round

    def _on_command(self, command: "registry_pb2.WorkerCommand") -> None:
        kind = command.WhichOneof("command")
        self.stats.commands.append(kind or "unknown")
        if kind == "drain":
            self._drain(command.drain.reason or "drain command")
        elif kind == "cancel_task":
            with self._slots:
                context = self._running.get(command.cancel_task.task_id)
            if context is not None:
                log.info("task %s cancelled: %s", context.task_id, command.cancel_task.reason)
                context.lose(f"cancelled: {command.cancel_task.reason}")

    def _drain(self, reason: str) -> None:
        if not self._draining.is_set():
            log.info("draining (%s): finishing %d running task(s), leasing no more", reason, len(self._running))
        self._draining.set()
        self._dispatch_wake.set()  # the stream is told 0 slots
        call = self._lease_call
        if call is not None:
            call.cancel()

    # ----------------------------------------------------------------------------- shutdown

    def _shutdown(self) -> None:
        """README order: leasing has stopped; tell handlers, wait for them, flush the outcome batch, journal
        what is undelivered, release what is still held, stop heartbeats, deregister, close the channel."""
        self._stopping.set()
        self._tell_all("worker stopping")
        started = time.monotonic()
        with self._slots:
            if self._running:
                log.info("waiting up to %.0fs for %d running task(s)", self.shutdown_grace, len(self._running))
            # Re-read shutdown_grace each time round: a second signal sets it to 0.
            while self._running and time.monotonic() - started < self.shutdown_grace:
                self._slots.wait(0.2)
            leftovers = list(self._running.values())
        # Delivering may retry for the policy's budget; after that (or a second signal) the rest is journaled.
        policy = self.retry_policy
        self._outcomes.close(timeout=policy.budget + (policy.immediate_retries + 2) * self.attempt_timeout)
        for context in leftovers:
            self._release(context, "worker shutdown: handler still running")
        stream = self._stream
        if stream is not None:
            stream.close(timeout=self.attempt_timeout)
        self._finished.set()
        self._beat_now.set()  # wakes a unary heartbeat loop waiting for its next beat
        call = self._heartbeat_call
        if call is not None:
            call.cancel()
        for thread in self._threads:
            thread.join(timeout=2.0)
        try:
            if self.worker_id:
                self.registry.DeregisterWorker(registry_pb2.DeregisterWorkerRequest(worker_id=self.worker_id),
                                               timeout=self.attempt_timeout)
                log.info("deregistered %s", self.worker_id)
        except grpc.RpcError as error:
            log.warning("deregister: %s", describe(error))
        finally:
            self._close_channels()
        left = len(self.journal)
        log.info("stopped: %s%s", self.stats.summary(),
                 f"; {left} journal entr{'y' if left == 1 else 'ies'} left in {self.journal.path}" if left else "")

    def _close_channels(self) -> None:
        self._channel.close()
        if self._registry_channel is not self._channel:
            self._registry_channel.close()

    def _tell_all(self, reason: str) -> None:
        with self._slots:
            for context in self._running.values():
                context.cancel_reason = context.cancel_reason or reason
                context.cancel_event.set()


# ------------------------------------------------------------------------------------- helpers

def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromMilliseconds(int(seconds * 1000))
    return value


def _lease_is_gone(error: grpc.RpcError) -> bool:
    return error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)
