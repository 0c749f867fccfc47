"""A tiny in-process Lifeline for the worker library's fault tests: a real grpc.server with a fake queue and
a fake registry that keep their state across a stop and a restart on the same port (the "outage").

The fake queue has the dispatch stream too (QueueService.Dispatch): it pushes pending tasks, leased and started,
up to the stream's slots, answers each request with an ack, frees a slot with an outcome or a release of a task
pushed on the same stream; `cut_streams()` breaks every open stream, `cut_before_ack` applies the next outcome and
breaks its stream before answering it (the outcome the worker must send again), `dispatch_supported = False`
answers UNIMPLEMENTED like a queue without it.

The fake queue follows the real one where the worker library can tell: fencing tokens grow with every lease,
an outcome with a token that is not the task's current one is refused (FAILED_PRECONDITION with the
ErrorInfo reason STALE_FENCING_TOKEN in grpc-status-details-bin), a repeated completion with the same token
is accepted and changes nothing, an expired lease is taken back by expire_leases(), CompleteTasks answers per
completion. It records every accepted outcome, so a test can count how often a task was completed.
"""

import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent import futures

from _support import LIBRARY

GENERATED = os.path.join(LIBRARY, "_generated")


def _stubs_current() -> bool:
    """Stubs exist and are newer than every contract (a proto changed since: generate again)."""
    marker = os.path.join(GENERATED, "lifeline", "queue", "v1", "queue_pb2.py")
    if not os.path.exists(marker):
        return False
    made = os.path.getmtime(marker)
    protos = os.path.join(LIBRARY, "..", "..", "..", "protos")
    for root, _, files in os.walk(protos):
        if any(f.endswith(".proto") and os.path.getmtime(os.path.join(root, f)) > made for f in files):
            return False
    return True


def ensure_stubs() -> bool:
    """The generated stubs, made by generate.sh when missing or older than a contract; False when they cannot be
    made here."""
    if not _stubs_current():
        try:
            subprocess.run(["/bin/bash", os.path.join(LIBRARY, "generate.sh")], check=True, capture_output=True,
                           timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
    if GENERATED not in sys.path:
        sys.path.insert(0, GENERATED)
    return True


if ensure_stubs():
    import grpc
    from google.protobuf import timestamp_pb2

    from lifeline.queue.v1 import queue_pb2, queue_pb2_grpc
    from lifeline.registry.v1 import registry_pb2, registry_pb2_grpc
    from lifeline_delivery import _ErrorInfo, _Status
    STUBS = True
else:  # pragma: no cover
    STUBS = False


class Refused(Exception):
    """A refusal as the real queue gives it: a status code, an ErrorInfo reason, a message."""

    def __init__(self, code, reason, message):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def _abort(context, refused):
    status = _Status(code=refused.code.value[0], message=refused.message)
    detail = status.details.add()
    detail.type_url = "type.googleapis.com/google.rpc.ErrorInfo"
    detail.value = _ErrorInfo(reason=refused.reason, domain="lifeline").SerializeToString()
    context.abort_with_status(_RichStatus(refused.code, refused.message,
                                          (("grpc-status-details-bin", status.SerializeToString()),)))


def _abort_stale(context, message):
    _abort(context, Refused(grpc.StatusCode.FAILED_PRECONDITION, "STALE_FENCING_TOKEN", message))


class _RichStatus(grpc.Status if STUBS else object):
    def __init__(self, code, details, trailing_metadata):
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


class FakeTask:
    def __init__(self, task_type, payload):
        self.id = str(uuid.uuid4())
        self.type = task_type
        self.payload = payload
        self.status = "pending"
        self.token = 0
        self.lease_expires = 0.0
        self.result = None
        self.error = None
        self.progress = None
        self.completions = []   # tokens of accepted completions (a repeat of the same token is not one)
        self.failures = []
        self.pushes = 0         # times pushed on a dispatch stream
        self.releases = 0

    def proto(self):
        status = {"pending": queue_pb2.TASK_STATUS_PENDING, "assigned": queue_pb2.TASK_STATUS_ASSIGNED,
                  "running": queue_pb2.TASK_STATUS_RUNNING, "completed": queue_pb2.TASK_STATUS_COMPLETED,
                  "failed": queue_pb2.TASK_STATUS_FAILED}[self.status]
        return queue_pb2.Task(id=self.id, type=self.type, payload=self.payload, status=status, fencing_token=self.token)


class FakeQueue(queue_pb2_grpc.QueueServiceServicer if STUBS else object):
    def __init__(self):
        self.lock = threading.Condition()
        self.tasks = {}
        self.calls = []  # method names, in order; requests on a dispatch stream as `Dispatch.<kind>`
        self.leasing_paused = False
        self.dispatch_supported = True
        self.cut_before_ack = False  # the next complete/fail on a stream is applied, then the stream breaks unanswered
        self.streams = set()         # the dispatch streams open now
        self.slot_counts = []        # every slot count a stream was given (open, then each capacity), in order
        self.max_result = 1 << 20    # a longer result is bad input (INVALID_ARGUMENT)

    # ------------------------------------------------------------------------- test helpers

    def enqueue(self, task_type, payload="{}"):
        task = FakeTask(task_type, payload)
        with self.lock:
            self.tasks[task.id] = task
            self.lock.notify_all()
        return task

    def expire_leases(self):
        """What the real queue's maintenance does with leases that ran out: back to pending."""
        with self.lock:
            for task in self.tasks.values():
                if task.status in ("assigned", "running") and task.lease_expires < time.monotonic():
                    task.status = "pending"
            self.lock.notify_all()

    def lease_as_another_worker(self, task):
        """The task's next holder: a new lease (a larger token) for someone else."""
        with self.lock:
            task.status, task.token = "running", task.token + 1
            task.lease_expires = time.monotonic() + 60
            return task.token

    def count(self, method):
        with self.lock:
            return self.calls.count(method)

    def cut_streams(self):
        """Breaks every open dispatch stream (UNAVAILABLE), as a lost connection would."""
        with self.lock:
            for stream in self.streams:
                stream.cut = True
            self.lock.notify_all()

    def pushed_to(self, task):
        """How many times the task was pushed on a dispatch stream."""
        with self.lock:
            return task.pushes

    def _call(self, method):
        with self.lock:
            self.calls.append(method)

    # ---------------------------------------------------------------------------------- rpcs

    def LeaseTasks(self, request, context):
        self._call("LeaseTasks")
        deadline = time.monotonic() + min(request.wait.ToTimedelta().total_seconds(), 5.0)
        lease = request.lease_duration.ToTimedelta().total_seconds() or 30.0
        with self.lock:
            while True:
                ready = [t for t in self.tasks.values()
                         if t.status == "pending" and t.type in request.task_types and not self.leasing_paused]
                if ready or time.monotonic() >= deadline or not context.is_active():
                    break
                self.lock.wait(0.05)
            leased = ready[:max(1, request.max_tasks)]
            for task in leased:
                task.token += 1
                task.status = "running" if request.start else "assigned"
                task.lease_expires = time.monotonic() + lease
            return queue_pb2.LeaseTasksResponse(tasks=[t.proto() for t in leased])

    def _held(self, task_id, token, context, states=("assigned", "running")):
        try:
            return self._check(task_id, token, states)
        except Refused as refused:
            _abort(context, refused)

    def _check(self, task_id, token, states=("assigned", "running")):
        task = self.tasks.get(task_id)
        if task is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, "TASK_NOT_FOUND", f"task {task_id} not found")
        if task.token != token or task.status not in states:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION, "STALE_FENCING_TOKEN",
                          f"task {task_id}: token {token} is not the current lease (token {task.token}, {task.status})")
        return task

    def StartTask(self, request, context):
        self._call("StartTask")
        with self.lock:
            task = self._held(request.task_id, request.fencing_token, context)
            task.status = "running"
            return queue_pb2.StartTaskResponse(task=task.proto())

    def _progress(self, request):
        task = self._check(request.task_id, request.fencing_token)
        task.progress = request.percent
        if request.HasField("lease_duration"):
            task.lease_expires = time.monotonic() + request.lease_duration.ToTimedelta().total_seconds()
        return task

    def _extend(self, request):
        task = self._check(request.task_id, request.fencing_token)
        task.lease_expires = time.monotonic() + (request.lease_duration.ToTimedelta().total_seconds() or 30.0)
        return task

    def ReportProgress(self, request, context):
        self._call("ReportProgress")
        with self.lock:
            try:
                return queue_pb2.ReportProgressResponse(task=self._progress(request).proto())
            except Refused as refused:
                _abort(context, refused)

    def ExtendLease(self, request, context):
        self._call("ExtendLease")
        with self.lock:
            try:
                return queue_pb2.ExtendLeaseResponse(task=self._extend(request).proto())
            except Refused as refused:
                _abort(context, refused)

    def _complete(self, task_id, token, result):
        """None when accepted, else (code, reason, message)."""
        task = self.tasks.get(task_id)
        if task is None:
            return (grpc.StatusCode.NOT_FOUND.value[0], "TASK_NOT_FOUND", "no such task")
        if task.status == "completed" and task.token == token:
            return None  # a repeat: changes nothing
        if task.token != token or task.status not in ("assigned", "running"):
            return (grpc.StatusCode.FAILED_PRECONDITION.value[0], "STALE_FENCING_TOKEN",
                    f"token {token} is not the current lease (token {task.token}, {task.status})")
        task.status, task.result = "completed", result
        task.completions.append(token)
        self.lock.notify_all()
        return None

    def CompleteTask(self, request, context):
        self._call("CompleteTask")
        with self.lock:
            refusal = self._complete(request.task_id, request.fencing_token, request.result)
            if refusal is not None:
                _abort_stale(context, refusal[2])
            return queue_pb2.CompleteTaskResponse(task=self.tasks[request.task_id].proto())

    def CompleteTasks(self, request, context):
        self._call("CompleteTasks")
        if any(len(c.result) > self.max_result for c in request.completions):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"result: more than {self.max_result} bytes")
        with self.lock:
            response = queue_pb2.CompleteTasksResponse()
            for completion in request.completions:
                refusal = self._complete(completion.task_id, completion.fencing_token, completion.result)
                result = response.results.add(task_id=completion.task_id, accepted=refusal is None)
                if refusal is not None:
                    result.code, result.reason, result.message = refusal
                else:
                    response.accepted_count += 1
            return response

    def _fail(self, request):
        task = self._check(request.task_id, request.fencing_token)
        task.failures.append((request.fencing_token, request.error.code,
                              request.retry_after.ToTimedelta().total_seconds() if request.HasField("retry_after") else None))
        task.status = "pending" if request.error.retryable else "failed"
        task.error = request.error.code
        self.lock.notify_all()
        return task

    def _release(self, request):
        task = self._check(request.task_id, request.fencing_token)
        task.status = "pending"
        task.releases += 1
        self.lock.notify_all()
        return task

    def FailTask(self, request, context):
        self._call("FailTask")
        with self.lock:
            try:
                task = self._fail(request)
            except Refused as refused:
                _abort(context, refused)
            return queue_pb2.FailTaskResponse(task=task.proto(), will_retry=request.error.retryable)

    def ReleaseTask(self, request, context):
        self._call("ReleaseTask")
        with self.lock:
            try:
                return queue_pb2.ReleaseTaskResponse(task=self._release(request).proto())
            except Refused as refused:
                _abort(context, refused)

    # ------------------------------------------------------------------------ the dispatch stream

    def _answer(self, kind, request):
        """The ack of one request on a dispatch stream (a refusal is an ack, not an error)."""
        ack = queue_pb2.DispatchAck(task_id=request.task_id)
        try:
            if kind == "complete":
                refusal = self._complete(request.task_id, request.fencing_token, request.result)
                if refusal is not None:
                    raise Refused(grpc.StatusCode.FAILED_PRECONDITION if refusal[0] == 9 else grpc.StatusCode.NOT_FOUND,
                                  refusal[1], refusal[2])
                task = self.tasks[request.task_id]
            elif kind == "fail":
                task = self._fail(request)
                ack.will_retry = request.error.retryable
            elif kind == "progress":
                task = self._progress(request)
            elif kind == "extend_lease":
                task = self._extend(request)
            elif kind == "release":
                task = self._release(request)
            else:
                raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", f"unknown request {kind}")
        except Refused as refused:
            ack.accepted, ack.code, ack.reason, ack.message = False, refused.code.value[0], refused.reason, refused.message
            return ack
        ack.accepted = True
        ack.task.CopyFrom(task.proto())
        return ack

    def Dispatch(self, request_iterator, context):
        self._call("Dispatch")
        if not self.dispatch_supported:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found: lifeline.queue.v1.QueueService/Dispatch")
        stream = _FakeStream()
        with self.lock:
            self.streams.add(stream)
        threading.Thread(target=self._read_stream, args=(stream, request_iterator), daemon=True).start()
        try:
            while True:
                with self.lock:
                    message = None
                    while message is None:
                        if stream.cut or not context.is_active():
                            break
                        if stream.outgoing:
                            message = stream.outgoing.pop(0)
                        elif stream.invalid:
                            break  # the answers due went out first, as the real queue does
                        elif stream.opened and not self.leasing_paused and len(stream.outstanding) < stream.slots:
                            ready = [t for t in self.tasks.values() if t.status == "pending" and t.type in stream.types]
                            if ready:
                                task = ready[0]
                                task.token += 1
                                task.status = "running"
                                task.lease_expires = time.monotonic() + stream.lease
                                task.pushes += 1
                                stream.outstanding.add(task.id)
                                message = queue_pb2.DispatchResponse(task=task.proto())
                        if message is None:
                            if stream.done:
                                return  # the worker half-closed and every request is answered
                            self.lock.wait(0.05)
                if message is None:
                    if stream.invalid:
                        context.abort(grpc.StatusCode.INVALID_ARGUMENT, stream.invalid)
                    context.abort(grpc.StatusCode.UNAVAILABLE, "the dispatch stream was cut")
                yield message
        finally:
            with self.lock:
                self.streams.discard(stream)

    def _read_stream(self, stream, request_iterator):
        try:
            for request in request_iterator:
                kind = request.WhichOneof("kind")
                with self.lock:
                    self.calls.append(f"Dispatch.{kind}")
                    if stream.cut:
                        return
                    if (kind == "open") == stream.opened:
                        stream.invalid = "`open` must be the first message, and only the first"
                    elif kind == "complete" and len(request.complete.result) > self.max_result:
                        stream.invalid = f"complete.result: more than {self.max_result} bytes"
                    elif kind == "open":
                        stream.opened = True
                        stream.slots = request.open.slots
                        stream.types = set(request.open.task_types)
                        stream.lease = request.open.lease_duration.ToTimedelta().total_seconds() or 30.0
                        self.slot_counts.append(stream.slots)
                    elif kind == "capacity":
                        stream.slots = request.capacity.slots
                        self.slot_counts.append(stream.slots)
                    else:
                        message = getattr(request, kind)
                        ack = self._answer(kind, message)
                        ack.request_id = request.request_id
                        if kind in ("complete", "fail", "release"):
                            stream.outstanding.discard(message.task_id)
                            if self.cut_before_ack and kind != "release":
                                self.cut_before_ack = False
                                stream.cut = True
                        if not stream.cut:
                            stream.outgoing.append(queue_pb2.DispatchResponse(ack=ack))
                    self.lock.notify_all()
                    if stream.invalid:
                        return  # nothing after a bad message is read
        except Exception:  # pylint: disable=broad-except  # the call ended under us
            pass
        finally:
            with self.lock:
                stream.done = True
                self.lock.notify_all()


class _FakeStream:
    def __init__(self):
        self.opened = False
        self.slots = 0
        self.types = set()
        self.lease = 30.0
        self.outstanding = set()  # pushed, no outcome or release on this stream yet
        self.outgoing = []
        self.cut = False
        self.invalid = ""
        self.done = False


class FakeRegistry(registry_pb2_grpc.RegistryServiceServicer if STUBS else object):
    def __init__(self, heartbeat_interval=1.0):
        self.lock = threading.Lock()
        self.workers = {}  # name -> (id, epoch)
        self.beats = 0
        self.stream_beats = 0
        self.deregistered = []
        self.heartbeat_interval = heartbeat_interval
        self.stream_supported = True
        self.commands = []  # WorkerCommands answered to the next beat

    def command(self, command):
        """Sends a command (registry_pb2.WorkerCommand) with the next heartbeat's answer."""
        with self.lock:
            self.commands.append(command)

    def RegisterWorker(self, request, context):
        with self.lock:
            worker_id, epoch = self.workers.get(request.name, (str(uuid.uuid4()), 0))
            self.workers[request.name] = (worker_id, epoch + 1)
        response = registry_pb2.RegisterWorkerResponse(
            worker=registry_pb2.Worker(id=worker_id, name=request.name, session_epoch=epoch + 1), created=epoch == 0)
        response.heartbeat_interval.FromMilliseconds(int(self.heartbeat_interval * 1000))
        return response

    def _ack(self):
        expires = timestamp_pb2.Timestamp()
        expires.GetCurrentTime()
        with self.lock:
            commands, self.commands = self.commands, []
        return registry_pb2.HeartbeatResponse(status=registry_pb2.WORKER_STATUS_ONLINE, expires_at=expires,
                                              commands=commands)

    def Heartbeat(self, request, context):
        with self.lock:
            self.beats += 1
        return self._ack()

    def HeartbeatStream(self, request_iterator, context):
        if not self.stream_supported:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found: HeartbeatStream")
        for _ in request_iterator:
            with self.lock:
                self.stream_beats += 1
            yield registry_pb2.HeartbeatStreamResponse(ack=self._ack())

    def DeregisterWorker(self, request, context):
        with self.lock:
            self.deregistered.append(request.worker_id)
        return registry_pb2.DeregisterWorkerResponse()


class FakeLifeline:
    """Queue and registry on one port, like the gateway; down() and up() are the outage."""

    def __init__(self):
        self.queue = FakeQueue()
        self.registry = FakeRegistry()
        self.port = None
        self._server = None
        self.up()

    @property
    def target(self):
        return f"http://127.0.0.1:{self.port}"

    def up(self):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        queue_pb2_grpc.add_QueueServiceServicer_to_server(self.queue, server)
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(self.registry, server)
        port = server.add_insecure_port(f"127.0.0.1:{self.port or 0}")
        if not port:
            raise RuntimeError(f"port {self.port} could not be bound again")
        self.port = port
        server.start()
        self._server = server

    def down(self):
        """Stops answering: open connections are closed, new ones refused."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=None).wait()

    def close(self):
        self.down()
