/** The example worker as a process against the fake gateway: flags, the demo types, the ledger, signals. */
import { strict as assert } from "node:assert";
import { ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { FakeGateway, eventually } from "./support/fake-gateway";

const DEMO = path.join(__dirname, "..", "examples", "demo-worker.js");

function start(args: string[]): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [DEMO, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout!.on("data", (d) => (output += d));
  child.stderr!.on("data", (d) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, output: () => output, exited };
}

describe("demo worker process", () => {
  let gateway: FakeGateway;
  let dir: string;
  before(async () => {
    gateway = new FakeGateway(300);
    await gateway.start();
  });
  after(() => gateway.close());
  beforeEach(() => {
    gateway.tasks.clear();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "lifeline-demo-"));
  });

  it("runs demo.echo, demo.fail and demo.steps, writes the ledger before reporting, and exits after --once N", async () => {
    const echo = gateway.enqueue("demo.echo", { hello: "world" });
    const fail = gateway.enqueue("demo.fail");
    const steps = gateway.enqueue("demo.steps", { steps: 3, step_ms: 20 });
    const credentials = path.join(dir, "credentials.json");
    fs.writeFileSync(credentials, JSON.stringify({ gateway_grpc: `http://127.0.0.1:${gateway.port}`, keys: [{ name: "w", tenant: "default", role: "worker", key: "k" }] }));
    const ledger = path.join(dir, "ledger");
    const run = start(["--credentials", credentials, "--key-name", "w", "--types", "demo.echo,demo.fail,demo.steps", "--once", "3",
      "--journal-dir", path.join(dir, "journal"), "--ledger", ledger, "--name", "demo-once", "--lease-seconds", "10"]);
    assert.equal(await run.exited, 0, run.output());
    assert.equal(gateway.tasks.get(echo)!.result, '{"echo":{"hello":"world"}}');
    assert.equal(gateway.tasks.get(fail)!.status, "failed");
    assert.equal(gateway.tasks.get(steps)!.result, '{"steps":3,"resumed_from":0}');
    assert.equal(gateway.tasks.get(steps)!.progress, 100);
    const token = gateway.tasks.get(steps)!.token;
    assert.equal(fs.readFileSync(`${ledger}.${run.child.pid}`, "utf8"), `${steps} ${token} 0\n`);
    assert.match(run.output(), /done: 2 completed, 1 failed/);
  });

  it("SIGTERM: the running handler is told to stop, its task released, the process exits at once", async () => {
    const id = gateway.enqueue("demo.steps", { steps: 1000, step_ms: 50 });
    const run = start(["--target", `127.0.0.1:${gateway.port}`, "--api-key", "k", "--types", "demo.steps", "--journal-dir", path.join(dir, "j")]);
    await eventually("running", () => gateway.tasks.get(id)!.progress > 0);
    const signalled = Date.now();
    run.child.kill("SIGTERM");
    assert.equal(await run.exited, 0, run.output());
    assert.ok(Date.now() - signalled < 3_000, `exited ${Date.now() - signalled} ms after SIGTERM`);
    assert.equal(gateway.tasks.get(id)!.status, "pending");
    assert.match(run.output(), /released/);
  });

  it("bad flags: exit code 2 and the usage", async () => {
    const unknown = start(["--target", "127.0.0.1:1", "--types", "demo.nope"]);
    assert.equal(await unknown.exited, 2);
    assert.match(unknown.output(), /--types: unknown 'demo.nope'/);
    const missing = start([]);
    assert.equal(await missing.exited, 2);
    assert.match(missing.output(), /give --target/);
  });
});
