#!/usr/bin/python3
"""Example Lifeline worker: runs the demo task types through the gateway (or a service directly).

    /usr/bin/python3 example_worker.py --credentials .lifeline/credentials.json --key-name default-worker
    /usr/bin/python3 example_worker.py --target http://127.0.0.1:5100 --api-key KEY --types demo.echo --once 1
    /usr/bin/python3 example_worker.py --target http://127.0.0.1:5100 --api-key KEY --long-poll  # no dispatch stream
    /usr/bin/python3 example_worker.py --target http://127.0.0.1:5100 --api-key KEY --types demo.steps \\
        --name py-steps --journal-dir /tmp/journal --ledger /tmp/ledger

Handlers (services/workers/README.md, "Demo task types"):
  demo.echo   returns {"echo": <payload>}; with {"sleep_seconds": N} it sleeps first, reporting progress
  demo.fail   fails with the non-retryable error DEMO_FAILURE
  demo.steps  runs payload.steps steps (default 5) of payload.step_ms ms (default 200), reporting progress
              after each; with --ledger PATH appends "<task id> <fencing token> <resumed from step>" to
              PATH.<pid> once the work is done, before reporting; returns {"steps": N, "resumed_from": 0}
              (this demo does not resume from checkpoints: it starts over)
Exit code 0 after a graceful stop (signal, drain, or --once N tasks ended), 1 when the worker failed
(e.g. a refused credential), 2 on bad arguments.
"""

import argparse
import logging
import os
import sys
import threading
import time

import lifeline_worker
from lifeline_worker import TaskContext, TaskFailed, Worker


def echo(ctx: TaskContext):
    payload = ctx.payload
    seconds = float(payload.get("sleep_seconds", 0)) if isinstance(payload, dict) else 0.0
    if seconds > 0:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            ctx.raise_if_cancelled()
            ctx.report_progress(int(100 * elapsed / seconds), f"{elapsed:.0f}s of {seconds:.0f}s")
            ctx.cancel_event.wait(min(1.0, seconds - elapsed))
    return {"echo": payload}


def fail(ctx: TaskContext):
    raise TaskFailed("DEMO_FAILURE", f"demo.fail always fails (task {ctx.task_id})", retryable=False)


class Steps:
    """demo.steps, with the side-effect ledger the fault tests count."""

    def __init__(self, ledger=None):
        self.ledger = ledger
        self._lock = threading.Lock()

    def __call__(self, ctx: TaskContext):
        payload = ctx.payload if isinstance(ctx.payload, dict) else {}
        steps = int(payload.get("steps", 5))
        step_ms = int(payload.get("step_ms", 200))
        resumed_from = 0  # no checkpoints in this demo: every attempt starts from the first step
        for step in range(resumed_from, steps):
            ctx.cancel_event.wait(step_ms / 1000.0)
            ctx.raise_if_cancelled()
            ctx.report_progress(int(100 * (step + 1) / steps), f"step {step + 1} of {steps}")
        if self.ledger:
            # A file per process (appends of several processes to one file can interleave); one writer at a time.
            line = f"{ctx.task_id} {ctx.fencing_token} {resumed_from}\n".encode("ascii")
            with self._lock:
                fd = os.open(f"{self.ledger}.{os.getpid()}", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
        return {"steps": steps, "resumed_from": resumed_from}


KNOWN_TYPES = ("demo.echo", "demo.fail", "demo.steps")
DEFAULT_TYPES = ("demo.echo", "demo.fail")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", help="gateway gRPC address, e.g. http://127.0.0.1:5100 "
                                         "(default: gateway_grpc from --credentials)")
    parser.add_argument("--api-key", help="API key (sent as 'authorization: Bearer <key>')")
    parser.add_argument("--credentials", help="the apphost's credentials.json, e.g. .lifeline/credentials.json")
    parser.add_argument("--key-name", default="default-worker", help="key to use from --credentials")
    parser.add_argument("--types", default=",".join(DEFAULT_TYPES),
                        help=f"comma-separated task types to run, of {', '.join(KNOWN_TYPES)} "
                             f"(default {','.join(DEFAULT_TYPES)})")
    parser.add_argument("--max-tasks", type=int, default=4, help="tasks run at once (default 4)")
    parser.add_argument("--once", type=int, metavar="N", help="exit after N tasks have ended (for tests)")
    parser.add_argument("--name", help="worker name (default py-<host>-<pid>); also names the journal file")
    parser.add_argument("--lease-seconds", type=float, default=30, help="lease duration (default 30)")
    parser.add_argument("--journal-dir", default=lifeline_worker.DEFAULT_JOURNAL_DIR,
                        help=f"offline journal directory (default {lifeline_worker.DEFAULT_JOURNAL_DIR})")
    parser.add_argument("--ledger", metavar="PATH",
                        help="demo.steps appends '<task id> <fencing token> <resumed from>' to PATH.<pid>")
    parser.add_argument("--poll-seconds", type=float, default=20,
                        help="LeaseTasks long-poll (default 20, max 30), when leasing with long polls")
    parser.add_argument("--long-poll", action="store_true",
                        help="lease with LeaseTasks long polls and unary calls instead of the queue's dispatch stream")
    parser.add_argument("--registry-target", help="registry address when --target is the queue service itself")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    target, api_key = args.target, args.api_key
    if args.credentials:
        try:
            gateway, key = lifeline_worker.load_credentials(args.credentials, args.key_name)
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"--credentials: {error}")
        target, api_key = target or gateway, api_key or key
    if not target:
        parser.error("give --target, or --credentials with a gateway_grpc entry")
    if args.max_tasks < 1 or (args.once is not None and args.once < 1) or args.lease_seconds < 1:
        parser.error("--max-tasks and --once must be positive, --lease-seconds at least 1")

    types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in types if t not in KNOWN_TYPES]
    if unknown or not types:
        parser.error(f"--types: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(KNOWN_TYPES)}")
    handlers = {"demo.echo": echo, "demo.fail": fail, "demo.steps": Steps(args.ledger)}

    worker = Worker(target, {t: handlers[t] for t in types}, api_key=api_key, name=args.name,
                    max_tasks=args.max_tasks, lease_duration=args.lease_seconds, poll_wait=args.poll_seconds,
                    once=args.once, registry_target=args.registry_target, journal_dir=args.journal_dir,
                    dispatch_stream=not args.long_poll)
    worker.install_signal_handlers()
    try:
        stats = worker.run()
    except lifeline_worker.grpc.RpcError as error:
        logging.getLogger("example_worker").error("worker failed: %s", lifeline_worker.describe(error))
        return 1
    print(f"done: {stats.completed} completed, {stats.failed} failed, {stats.released} released, "
          f"{stats.abandoned} abandoned, {stats.retries} retries, {stats.journaled} journaled, "
          f"{stats.replayed} replayed, {stats.refused} refused", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
