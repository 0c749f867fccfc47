#!/usr/bin/python3
"""Example Lifeline worker: runs the demo task types through the gateway (or a service directly).

    /usr/bin/python3 example_worker.py --credentials .lifeline/credentials.json --key-name default-worker
    /usr/bin/python3 example_worker.py --target http://127.0.0.1:5100 --api-key KEY --types demo.echo --once 1

Handlers:
  demo.echo   returns {"echo": <payload>}; with {"sleep_seconds": N} it sleeps first, reporting progress
  demo.fail   fails with the non-retryable error DEMO_FAILURE
Exit code 0 after a graceful stop (signal, drain, or --once N tasks ended), 1 on a startup error.
"""

import argparse
import logging
import sys
import time

import lifeline_worker
from lifeline_worker import TaskContext, TaskFailure, Worker


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
    raise TaskFailure("DEMO_FAILURE", f"demo.fail always fails (task {ctx.task_id})", retryable=False)


DEMO_HANDLERS = {"demo.echo": echo, "demo.fail": fail}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", help="gateway gRPC address, e.g. http://127.0.0.1:5100 "
                                         "(default: gateway_grpc from --credentials)")
    parser.add_argument("--api-key", help="API key (sent as 'authorization: Bearer <key>')")
    parser.add_argument("--credentials", help="the apphost's credentials.json, e.g. .lifeline/credentials.json")
    parser.add_argument("--key-name", default="default-worker", help="key to use from --credentials")
    parser.add_argument("--types", default=",".join(DEMO_HANDLERS),
                        help=f"comma-separated task types to run (of {', '.join(DEMO_HANDLERS)})")
    parser.add_argument("--max-tasks", type=int, default=4, help="tasks run at once (default 4)")
    parser.add_argument("--once", type=int, metavar="N", help="exit after N tasks have ended (for tests)")
    parser.add_argument("--name", help="worker name (default py-<host>-<pid>)")
    parser.add_argument("--lease-seconds", type=float, default=30, help="lease duration (default 30)")
    parser.add_argument("--poll-seconds", type=float, default=20, help="LeaseTasks long-poll (default 20, max 30)")
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

    types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in types if t not in DEMO_HANDLERS]
    if unknown or not types:
        parser.error(f"--types: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(DEMO_HANDLERS)}")

    worker = Worker(target, {t: DEMO_HANDLERS[t] for t in types}, api_key=api_key, name=args.name,
                    max_tasks=args.max_tasks, lease_duration=args.lease_seconds, poll_wait=args.poll_seconds,
                    once=args.once, registry_target=args.registry_target)
    worker.install_signal_handlers()
    try:
        stats = worker.run()
    except lifeline_worker.grpc.RpcError as error:
        logging.getLogger("example_worker").error("worker failed: %s", lifeline_worker.describe(error))
        return 1
    print(f"done: {stats.completed} completed, {stats.failed} failed, {stats.released} released, "
          f"{stats.abandoned} abandoned", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
