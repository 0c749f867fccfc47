/**
 * Example Lifeline worker: runs the demo task types through the gateway.
 *
 *   node dist/examples/demo-worker.js --credentials .lifeline/credentials.json --key-name default-worker
 *   node dist/examples/demo-worker.js --target http://127.0.0.1:5100 --api-key KEY --types demo.steps --ledger /tmp/ledger
 *
 * Handlers (services/workers/README.md, "Demo task types"):
 *   demo.echo   completes with {"echo": <payload>}; with {"sleep_seconds": N} it first works N seconds, reporting progress
 *   demo.fail   fails, not retryable, code DEMO_FAILURE
 *   demo.steps  runs payload.steps steps (default 5) of payload.step_ms ms (default 200), reporting progress after each;
 *               with --ledger PATH appends "<task id> <fencing token> 0" to PATH.<pid> once done, before reporting;
 *               completes with {"steps": N, "resumed_from": 0}
 * Exit code 0 after a graceful stop (SIGINT/SIGTERM, drain, or --once N tasks ended), 1 on a startup error, 2 on bad flags.
 */
import * as fs from "node:fs";
import { parseArgs } from "node:util";
import { LifelineWorker, TaskContext, TaskFailed, TaskHandler, loadCredentials } from "../src";

const USAGE = `Usage: node dist/examples/demo-worker.js [options]

  --target <url>           gateway gRPC address, e.g. http://127.0.0.1:5100 (default: gateway_grpc of --credentials)
  --api-key <key>          API key (sent as 'authorization: Bearer <key>')
  --credentials <file>     the apphost's credentials.json, e.g. .lifeline/credentials.json
  --key-name <name>        key to use from --credentials (default default-worker)
  --types <a,b>            task types to run: demo.echo, demo.fail, demo.steps (default demo.echo,demo.fail)
  --max-tasks <n>          tasks run at once (default 4)
  --once <n>               lease at most n tasks; exit once they have ended and every outcome is delivered
  --lease-seconds <n>      lease duration (default 30)
  --journal-dir <dir>      offline journal directory (default .lifeline-journal)
  --ledger <path>          demo.steps appends "<task id> <fencing token> 0" per finished task to <path>.<pid>
  --name <name>            worker name (default node-<host>-<pid>)
  --registry-target <url>  gateway address for registry calls, when it differs from --target
  --long-poll              lease with LeaseTasks long polls and unary calls, not the queue's dispatch stream
  -h, --help               this text
`;

const KNOWN_TYPES = ["demo.echo", "demo.fail", "demo.steps"];
const DEFAULT_TYPES = ["demo.echo", "demo.fail"];

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    function onAbort() {
      clearTimeout(timer);
      reject(signal.reason);
    }
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function field(payload: unknown, name: string): unknown {
  return payload !== null && typeof payload === "object" ? (payload as Record<string, unknown>)[name] : undefined;
}

async function echo(ctx: TaskContext): Promise<unknown> {
  const seconds = Number(field(ctx.payload, "sleep_seconds") ?? 0);
  if (seconds > 0) {
    const started = Date.now();
    for (let elapsed = 0; elapsed < seconds * 1000; elapsed = Date.now() - started) {
      await ctx.reportProgress(Math.floor((100 * elapsed) / (seconds * 1000)), `${Math.floor(elapsed / 1000)}s of ${seconds}s`);
      await delay(Math.min(1000, seconds * 1000 - elapsed), ctx.signal);
    }
  }
  return { echo: ctx.payload };
}

function fail(ctx: TaskContext): never {
  throw new TaskFailed("DEMO_FAILURE", `demo.fail always fails (task ${ctx.taskId})`, { retryable: false });
}

function steps(ledger: string | undefined): TaskHandler {
  return async (ctx) => {
    const total = Math.max(0, Math.floor(Number(field(ctx.payload, "steps") ?? 5)));
    const stepMs = Math.max(0, Number(field(ctx.payload, "step_ms") ?? 200));
    const resumedFrom = 0; // this demo keeps no checkpoints: every attempt starts at step 0
    for (let step = resumedFrom; step < total; step++) {
      await delay(stepMs, ctx.signal);
      await ctx.reportProgress(Math.floor((100 * (step + 1)) / total), `step ${step + 1} of ${total}`);
    }
    if (ledger) {
      // One file per process; appendFileSync writes the whole line in one write(2) call.
      fs.appendFileSync(`${ledger}.${process.pid}`, `${ctx.taskId} ${ctx.fencingToken} ${resumedFrom}\n`);
    }
    return { steps: total, resumed_from: resumedFrom };
  };
}

function positive(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const number = Number(value);
  if (!Number.isFinite(number) || number <= 0) throw new Error(`${flag}: '${value}' is not a positive number`);
  return number;
}

async function main(argv: string[]): Promise<number> {
  let args;
  try {
    args = parseArgs({
      args: argv,
      options: {
        target: { type: "string" },
        "api-key": { type: "string" },
        credentials: { type: "string" },
        "key-name": { type: "string", default: "default-worker" },
        types: { type: "string" },
        "max-tasks": { type: "string" },
        once: { type: "string" },
        "lease-seconds": { type: "string" },
        "journal-dir": { type: "string" },
        ledger: { type: "string" },
        name: { type: "string" },
        "registry-target": { type: "string" },
        "long-poll": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(USAGE);
    return 0;
  }

  let target = args.target;
  let apiKey = args["api-key"];
  let maxTasks: number | undefined;
  let once: number | undefined;
  let leaseSeconds: number | undefined;
  const types = (args.types ?? DEFAULT_TYPES.join(",")).split(",").map((t) => t.trim()).filter((t) => t.length > 0);
  try {
    if (args.credentials) {
      const credentials = loadCredentials(args.credentials, args["key-name"] ?? "default-worker");
      target ??= credentials.target;
      apiKey ??= credentials.apiKey;
    }
    if (!target) throw new Error("give --target, or --credentials with a gateway_grpc entry");
    const unknown = types.filter((t) => !KNOWN_TYPES.includes(t));
    if (types.length === 0 || unknown.length > 0) {
      throw new Error(`--types: unknown '${unknown.join(", ")}'; known: ${KNOWN_TYPES.join(", ")}`);
    }
    maxTasks = positive(args["max-tasks"], "--max-tasks");
    once = positive(args.once, "--once");
    leaseSeconds = positive(args["lease-seconds"], "--lease-seconds");
  } catch (error) {
    process.stderr.write(`demo-worker: ${(error as Error).message}\n`);
    return 2;
  }

  const all: Record<string, TaskHandler> = { "demo.echo": echo, "demo.fail": fail, "demo.steps": steps(args.ledger) };
  const handlers = Object.fromEntries(types.map((t) => [t, all[t]]));

  let worker: LifelineWorker;
  try {
    worker = new LifelineWorker({
      target,
      apiKey,
      handlers,
      name: args.name,
      maxTasks,
      once,
      leaseSeconds,
      journalDir: args["journal-dir"],
      registryTarget: args["registry-target"],
      dispatchStream: !args["long-poll"],
    });
  } catch (error) {
    process.stderr.write(`demo-worker: ${(error as Error).message}\n`);
    return 1;
  }
  // SIGINT/SIGTERM → graceful stop; a second one skips the rest of the grace period.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => worker.stop(`signal ${signal}`));

  try {
    const counters = await worker.run();
    process.stdout.write(
      `done: ${counters.completed} completed, ${counters.failed} failed, ${counters.refused} refused, ` +
        `${counters.journaled} journaled, ${counters.replayed} replayed, ${counters.retries} retries, ` +
        `${counters.released} released, ${counters.abandoned} abandoned\n`,
    );
    return 0;
  } catch (error) {
    process.stderr.write(`demo-worker: worker failed: ${(error as Error).message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
