"""A small reusable Lifeline worker for Python.

    worker = Worker(target="http://127.0.0.1:5100", api_key=key, name="py-1",
                    handlers={"demo.echo": lambda ctx: {"echo": ctx.payload}})
    worker.install_signal_handlers()   # SIGINT/SIGTERM -> graceful stop
    worker.run()                       # returns after the graceful stop

The life it follows (README, "A worker's life"): RegisterWorker -> a background thread heartbeats
every `heartbeat_interval` and honours the commands in the answers (`drain`: lease no more, finish
what runs, then stop; `cancel_task`: tell that handler, report no outcome) -> LeaseTasks with a long
poll, up to the free slots -> StartTask -> the handler, on a thread of its own (progress reports extend
the lease; a keeper thread extends the leases of handlers that stay silent) -> CompleteTask /
FailTask with the lease's fencing token. Stopping is ordered: lease no more, tell running handlers
(`ctx.cancelled`), wait for them up to `shutdown_grace`, ReleaseTask whatever is still held (no
attempt is used), DeregisterWorker.

A handler takes a TaskContext and returns any JSON-serialisable value, the task's result. It fails
the task by raising TaskFailure(code, message, retryable); any other exception fails it as retryable
`UNHANDLED_EXCEPTION`, except while the worker is stopping and has told the handler to give up
(`ctx.raise_if_cancelled()` raises TaskCancelled): then the task is released. Cancellation is
cooperative, since Python threads cannot be interrupted.

Needs the stubs from generate.sh and Debian's python3-grpcio and python3-protobuf (/usr/bin/python3).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "_generated"))

import grpc  # noqa: E402
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory  # noqa: E402

try:
    from lifeline.checkpoint.v1 import checkpoint_pb2, checkpoint_pb2_grpc  # noqa: E402
    from lifeline.common.v1 import common_pb2  # noqa: E402
    from lifeline.queue.v1 import queue_pb2, queue_pb2_grpc  # noqa: E402
    from lifeline.registry.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402
except ImportError as error:  # a setup problem: say how to fix it
    raise ImportError(f"{error}: the gRPC stubs are missing; run services/workers/python/generate.sh first") from error

log = logging.getLogger("lifeline.worker")



class TaskFailure(Exception):
    """Raised by a handler to fail its task with a structured error.

    retryable=True returns the task to pending after its backoff (until its retries run out);
    retryable=False ends it as failed.
    """

    def __init__(self, code: str, message: str, retryable: bool = False,
                 details: Optional[Dict[str, str]] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.details = dict(details or {})


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
        self.last_extended = time.monotonic()

    @property
    def task_id(self) -> str:
        return self.task.id

    @property
    def fencing_token(self) -> int:
        return self.task.fencing_token

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
        """Records progress (0-100) and extends the lease. If the lease is gone, marks the context cancelled."""
        try:
            self._worker.queue.ReportProgress(queue_pb2.ReportProgressRequest(
                task_id=self.task_id, fencing_token=self.fencing_token, percent=percent, message=message,
                lease_duration=_duration(self._worker.lease_duration)), timeout=self._worker.rpc_timeout)
            self.last_extended = time.monotonic()
        except grpc.RpcError as error:
            if _lease_is_gone(error):
                self.lose(f"progress refused: {describe(error)}")
            else:
                log.warning("progress of task %s not recorded: %s", self.task_id, describe(error))

    def lose(self, reason: str) -> None:
        """The lease is no longer ours: tell the handler; no outcome will be reported."""
        self.lost = True
        self.cancel_reason = reason
        self.cancel_event.set()


@dataclass
class WorkerStats:
    """What this worker did, for logs and tests. Updated from several threads through add()."""
    completed: int = 0
    failed: int = 0
    released: int = 0
    abandoned: int = 0  # no outcome reported: the task was cancelled or its lease lost
    commands: List[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.abandoned


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


def open_channel(target: str, api_key: Optional[str] = None) -> grpc.Channel:
    """A channel to the gateway at `target` (`http://host:port`, `https://host:port` or `host:port`)
    that sends `authorization: Bearer <api_key>`; the gateway takes the tenant and role from it."""
    address = target.split("://", 1)[-1].rstrip("/")
    channel = (grpc.secure_channel(address, grpc.ssl_channel_credentials()) if target.startswith("https://")
               else grpc.insecure_channel(address))
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


# -------------------------------------------------------------------------------------- worker

Handler = Callable[[TaskContext], Any]


class Worker:
    """Registers, heartbeats, leases and runs tasks until stopped, drained, or `once` tasks are done."""

    def __init__(self, target: str, handlers: Dict[str, Handler], api_key: Optional[str] = None,
                 name: Optional[str] = None, max_tasks: int = 4, lease_duration: float = 30.0,
                 poll_wait: float = 20.0, shutdown_grace: float = 20.0, once: Optional[int] = None,
                 registry_target: Optional[str] = None,
                 version: str = "1.0.0", rpc_timeout: float = 10.0):
        """
        target: the gateway (`registry_target`: another gateway address for registry calls, rarely needed).
        handlers: task type -> handler; the types are the worker's capabilities.
        max_tasks: tasks run at once; lease_duration: seconds per lease (extended while running);
        poll_wait: long-poll of LeaseTasks (<= 30 s); shutdown_grace: how long stopping waits for handlers;
        once: stop after this many tasks have ended (completed, failed or abandoned).
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
        self._slots = threading.Condition()  # guards _running; notified when a task ends
        self._running: Dict[str, TaskContext] = {}
        self._lease_call = None

    # ------------------------------------------------------------------------------- control

    def stop(self, reason: str = "stop requested") -> None:
        """Asks the worker to stop (safe from any thread or a signal handler); `run` then shuts down in order."""
        if not self._stopping.is_set():
            log.info("stopping: %s", reason)
        self._stopping.set()
        call = self._lease_call
        if call is not None:
            call.cancel()  # end a long poll at once

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM stop the worker gracefully; a second one skips the rest of the grace period."""
        def on_signal(signum, _frame):
            if self._stopping.is_set():
                self.shutdown_grace = 0
            self.stop(f"signal {signal.Signals(signum).name}")
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)

    # ------------------------------------------------------------------------------ the life

    def run(self) -> WorkerStats:
        """Runs until stopped; always releases what it still holds and deregisters before returning."""
        self._register()
        for loop in (self._heartbeat_loop, self._lease_keeper_loop):
            threading.Thread(target=loop, name=loop.__name__.strip("_"), daemon=True).start()
        try:
            self._lease_loop()
        finally:
            self._shutdown()
        return self.stats

    def _register(self) -> None:
        request = registry_pb2.RegisterWorkerRequest(
            name=self.name, type=registry_pb2.WORKER_TYPE_STANDALONE, capabilities=sorted(self.handlers),
            metadata=registry_pb2.WorkerMetadata(version=self.version, max_concurrent_tasks=self.max_tasks,
                                                 tags={"language": "python"}))
        deadline = time.monotonic() + 60
        while True:
            try:
                response = self.registry.RegisterWorker(request, timeout=self.rpc_timeout)
                break
            except grpc.RpcError as error:
                # The suite may be starting, or a service restarting: retry while waiting helps.
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                        or time.monotonic() > deadline or self._stopping.is_set():
                    raise
                log.warning("register: %s; retrying", describe(error))
                self._stopping.wait(1.0)
        self.worker_id = response.worker.id
        self.session_epoch = response.worker.session_epoch
        interval = response.heartbeat_interval.ToTimedelta().total_seconds()
        self.heartbeat_interval = interval if interval > 0 else 5.0
        log.info("registered %s as %s (session %d, heartbeat every %.1fs, types %s)", self.name, self.worker_id,
                 self.session_epoch, self.heartbeat_interval, ", ".join(sorted(self.handlers)))

    def _lease_loop(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            capacity = self._wait_for_capacity()
            if capacity == 0:
                continue
            request = queue_pb2.LeaseTasksRequest(
                worker_id=self.worker_id, task_types=sorted(self.handlers), max_tasks=capacity,
                lease_duration=_duration(self.lease_duration), wait=_duration(self.poll_wait))
            call = self.queue.LeaseTasks.future(request, timeout=self.poll_wait + self.rpc_timeout)
            self._lease_call = call
            try:
                if self._stopping.is_set() or self._draining.is_set():
                    call.cancel()
                response = call.result()
                backoff = 0.5
            except grpc.FutureCancelledError:
                continue  # stopping or draining: the loop condition decides
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.CANCELLED:
                    continue
                if reason_of(error) == "WORKER_DRAINING":
                    self._drain("the queue says this worker is draining")
                    continue
                log.warning("lease: %s; retrying in %.1fs", describe(error), backoff)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 10.0)
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
                capacity = min(capacity, self.once - self.stats.finished - len(self._running))
            if self._draining.is_set() or capacity <= 0:
                if not self._running:
                    self._stopping.set()
                    log.info("stopping: %s", "drained" if self._draining.is_set() else f"{self.once} task(s) done")
                else:
                    self._slots.wait(1.0)
                return 0
            return capacity

    def _run_task(self, context: TaskContext) -> None:
        task = context.task
        try:
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
            except TaskFailure as failure:
                self._fail(context, common_pb2.ErrorDetail(code=failure.code, message=failure.message[:4096],
                                                          retryable=failure.retryable, details=failure.details))
            except Exception as error:  # pylint: disable=broad-except
                if context.lost:
                    self._abandon(context)
                elif context.cancelled and self._stopping.is_set():
                    self._release(context, "worker stopping")  # the handler gave up because we asked
                else:
                    log.exception("handler of task %s raised", task.id)
                    self._fail(context, common_pb2.ErrorDetail(
                        code="UNHANDLED_EXCEPTION", message=f"{type(error).__name__}: {error}"[:4096], retryable=True))
            else:
                self._complete(context, json.dumps(result))
        finally:
            with self._slots:
                self._running.pop(task.id, None)
                self._slots.notify_all()

    def _complete(self, context: TaskContext, result: str) -> None:
        if context.lost:
            return self._abandon(context)
        try:
            self.queue.CompleteTask(queue_pb2.CompleteTaskRequest(
                task_id=context.task_id, fencing_token=context.fencing_token, result=result), timeout=self.rpc_timeout)
            self.stats.add("completed")
            log.info("task %s completed", context.task_id)
        except grpc.RpcError as error:
            self._refused(context, "completion", error)

    def _fail(self, context: TaskContext, error_detail) -> None:
        if context.lost:
            return self._abandon(context)
        try:
            response = self.queue.FailTask(queue_pb2.FailTaskRequest(
                task_id=context.task_id, fencing_token=context.fencing_token, error=error_detail),
                timeout=self.rpc_timeout)
            self.stats.add("failed")
            log.info("task %s failed with %s (%s)", context.task_id, error_detail.code,
                     "will retry" if response.will_retry else queue_pb2.TaskStatus.Name(response.task.status))
        except grpc.RpcError as error:
            self._refused(context, "failure", error)

    def _refused(self, context: TaskContext, what: str, error: grpc.RpcError) -> None:
        # A refused outcome (stale token, cancelled task) changes nothing on the server, by design.
        log.warning("task %s: %s refused: %s", context.task_id, what, describe(error))
        self.stats.add("abandoned")

    def _abandon(self, context: TaskContext) -> None:
        log.info("task %s: no outcome reported (%s)", context.task_id, context.cancel_reason)
        self.stats.add("abandoned")

    def _release(self, context: TaskContext, reason: str) -> None:
        try:
            self.queue.ReleaseTask(queue_pb2.ReleaseTaskRequest(
                task_id=context.task_id, fencing_token=context.fencing_token, reason=reason), timeout=self.rpc_timeout)
            self.stats.add("released")
            log.info("task %s released (%s)", context.task_id, reason)
        except grpc.RpcError as error:
            log.warning("task %s not released: %s", context.task_id, describe(error))
        finally:
            with self._slots:
                self._running.pop(context.task_id, None)
                self._slots.notify_all()

    # --------------------------------------------------------------------- background loops

    def _heartbeat_loop(self) -> None:
        while not self._finished.is_set():
            with self._slots:
                running = list(self._running)
            request = registry_pb2.HeartbeatRequest(
                worker_id=self.worker_id, session_epoch=self.session_epoch,
                status=(registry_pb2.WORKER_STATUS_BUSY if len(running) >= self.max_tasks
                        else registry_pb2.WORKER_STATUS_ONLINE),
                running_task_ids=running, load=len(running) / self.max_tasks)
            try:
                response = self.registry.Heartbeat(request, timeout=self.rpc_timeout)
                for command in response.commands:
                    self._on_command(command)
            except grpc.RpcError as error:
                if reason_of(error) == "STALE_SESSION":
                    log.error("heartbeat refused: another process registered %s again and owns it now", self.name)
                    self._tell_all("session superseded")
                    self.stop("session superseded")
                    return
                log.warning("heartbeat: %s", describe(error))
            self._finished.wait(self.heartbeat_interval)

    def _lease_keeper_loop(self) -> None:
        """Extends the leases of tasks whose handlers have not reported progress for a third of a lease."""
        while not self._finished.wait(1.0):
            now = time.monotonic()
            with self._slots:
                due = [c for c in self._running.values() if not c.lost and now - c.last_extended >= self.lease_duration / 3]
            for context in due:
                try:
                    self.queue.ExtendLease(queue_pb2.ExtendLeaseRequest(
                        task_id=context.task_id, fencing_token=context.fencing_token,
                        lease_duration=_duration(self.lease_duration)), timeout=self.rpc_timeout)
                    context.last_extended = time.monotonic()
                except grpc.RpcError as error:
                    if _lease_is_gone(error):
                        context.lose(f"lease lost: {describe(error)}")
                        log.warning("task %s: %s", context.task_id, context.cancel_reason)
                    else:
                        log.warning("task %s: lease not extended: %s", context.task_id, describe(error))

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
        call = self._lease_call
        if call is not None:
            call.cancel()

    # ----------------------------------------------------------------------------- shutdown

    def _shutdown(self) -> None:
        """Ordered: leasing has stopped; tell handlers, wait for them, release the rest, deregister."""
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
        for context in leftovers:
            self._release(context, "worker shutdown: handler still running")
        self._finished.set()
        try:
            if self.worker_id:
                self.registry.DeregisterWorker(registry_pb2.DeregisterWorkerRequest(worker_id=self.worker_id),
                                               timeout=self.rpc_timeout)
                log.info("deregistered %s", self.worker_id)
        except grpc.RpcError as error:
            log.warning("deregister: %s", describe(error))
        finally:
            self._channel.close()
            if self._registry_channel is not self._channel:
                self._registry_channel.close()
        log.info("stopped: %d completed, %d failed, %d released, %d abandoned", self.stats.completed,
                 self.stats.failed, self.stats.released, self.stats.abandoned)

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


def describe(error: grpc.RpcError) -> str:
    """`CODE: message [REASON]` of a failed call."""
    reason = reason_of(error)
    return f"{error.code().name}: {error.details()}" + (f" [{reason}]" if reason else "")


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


def reason_of(error: grpc.RpcError) -> str:
    """The `google.rpc.ErrorInfo` reason of a refusal (e.g. STALE_FENCING_TOKEN), or ''."""
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == "grpc-status-details-bin":
            for detail in _Status.FromString(value).details:
                if detail.type_url.endswith("/google.rpc.ErrorInfo"):
                    return _ErrorInfo.FromString(detail.value).reason
    return ""
