"""A tiny in-process Lifeline for the worker library's fault tests: a real grpc.server with a fake queue and
a fake registry that keep their state across a stop and a restart on the same port (the "outage").

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


def ensure_stubs() -> bool:
    """The generated stubs, made by generate.sh when missing; False when they cannot be made here."""
    if not os.path.isdir(os.path.join(GENERATED, "lifeline")):
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


def _abort_stale(context, message):
    status = _Status(code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message=message)
    detail = status.details.add()
    detail.type_url = "type.googleapis.com/google.rpc.ErrorInfo"
    detail.value = _ErrorInfo(reason="STALE_FENCING_TOKEN", domain="lifeline").SerializeToString()
    context.abort_with_status(_RichStatus(grpc.StatusCode.FAILED_PRECONDITION, message,
                                          (("grpc-status-details-bin", status.SerializeToString()),)))


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

    def proto(self):
        status = {"pending": queue_pb2.TASK_STATUS_PENDING, "assigned": queue_pb2.TASK_STATUS_ASSIGNED,
                  "running": queue_pb2.TASK_STATUS_RUNNING, "completed": queue_pb2.TASK_STATUS_COMPLETED,
                  "failed": queue_pb2.TASK_STATUS_FAILED}[self.status]
        return queue_pb2.Task(id=self.id, type=self.type, payload=self.payload, status=status, fencing_token=self.token)


class FakeQueue(queue_pb2_grpc.QueueServiceServicer if STUBS else object):
    def __init__(self):
        self.lock = threading.Condition()
        self.tasks = {}
        self.calls = []  # method names, in order
        self.leasing_paused = False

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
        task = self.tasks.get(task_id)
        if task is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"task {task_id} not found")
        if task.token != token or task.status not in states:
            _abort_stale(context, f"task {task_id}: token {token} is not the current lease (token {task.token}, {task.status})")
        return task

    def StartTask(self, request, context):
        self._call("StartTask")
        with self.lock:
            task = self._held(request.task_id, request.fencing_token, context)
            task.status = "running"
            return queue_pb2.StartTaskResponse(task=task.proto())

    def ReportProgress(self, request, context):
        self._call("ReportProgress")
        with self.lock:
            task = self._held(request.task_id, request.fencing_token, context)
            task.progress = request.percent
            if request.HasField("lease_duration"):
                task.lease_expires = time.monotonic() + request.lease_duration.ToTimedelta().total_seconds()
            return queue_pb2.ReportProgressResponse(task=task.proto())

    def ExtendLease(self, request, context):
        self._call("ExtendLease")
        with self.lock:
            task = self._held(request.task_id, request.fencing_token, context)
            task.lease_expires = time.monotonic() + (request.lease_duration.ToTimedelta().total_seconds() or 30.0)
            return queue_pb2.ExtendLeaseResponse(task=task.proto())

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

    def FailTask(self, request, context):
        self._call("FailTask")
        with self.lock:
            task = self._held(request.task_id, request.fencing_token, context)
            task.failures.append((request.fencing_token, request.error.code,
                                  request.retry_after.ToTimedelta().total_seconds() if request.HasField("retry_after") else None))
            task.status = "pending" if request.error.retryable else "failed"
            task.error = request.error.code
            self.lock.notify_all()
            return queue_pb2.FailTaskResponse(task=task.proto(), will_retry=request.error.retryable)

    def ReleaseTask(self, request, context):
        self._call("ReleaseTask")
        with self.lock:
            task = self._held(request.task_id, request.fencing_token, context)
            task.status = "pending"
            self.lock.notify_all()
            return queue_pb2.ReleaseTaskResponse(task=task.proto())


class FakeRegistry(registry_pb2_grpc.RegistryServiceServicer if STUBS else object):
    def __init__(self, heartbeat_interval=1.0):
        self.lock = threading.Lock()
        self.workers = {}  # name -> (id, epoch)
        self.beats = 0
        self.stream_beats = 0
        self.deregistered = []
        self.heartbeat_interval = heartbeat_interval
        self.stream_supported = True

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
        return registry_pb2.HeartbeatResponse(status=registry_pb2.WORKER_STATUS_ONLINE, expires_at=expires)

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
