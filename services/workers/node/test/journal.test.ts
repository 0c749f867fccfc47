import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { Journal } from "../src/journal";

describe("journal", () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "lifeline-journal-"));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const at = () => new Date("2025-01-02T03:04:05.678Z");

  it("appends one JSON line per entry in the README's format, fencing tokens as strings", () => {
    const journal = new Journal(dir, "w1", at);
    journal.append({ kind: "progress", task_id: "t1", fencing_token: "9007199254740993", progress: { percent: 40, message: "step 2" } });
    journal.append({ kind: "complete", task_id: "t1", fencing_token: "9007199254740993", result: { steps: 5 } });
    journal.append({ kind: "fail", task_id: "t2", fencing_token: "7", error: { code: "E", message: "m", retryable: true, retry_after_ms: 1500 } });
    const lines = fs.readFileSync(path.join(dir, "w1.journal"), "utf8").split("\n");
    assert.deepEqual(lines, [
      '{"seq":1,"kind":"progress","task_id":"t1","fencing_token":"9007199254740993","progress":{"percent":40,"message":"step 2"},"at":"2025-01-02T03:04:05.678Z"}',
      '{"seq":2,"kind":"complete","task_id":"t1","fencing_token":"9007199254740993","result":{"steps":5},"at":"2025-01-02T03:04:05.678Z"}',
      '{"seq":3,"kind":"fail","task_id":"t2","fencing_token":"7","error":{"code":"E","message":"m","retryable":true,"retry_after_ms":1500},"at":"2025-01-02T03:04:05.678Z"}',
      "",
    ]);
  });

  it("fsyncs every append before it returns", () => {
    const realFs = require("node:fs") as typeof fs;
    const original = realFs.fsyncSync;
    const synced: number[] = [];
    realFs.fsyncSync = (fd: number) => {
      synced.push(fd);
      original(fd);
    };
    try {
      const journal = new Journal(dir, "w1", at);
      journal.append({ kind: "complete", task_id: "a", fencing_token: "1", result: null });
      assert.equal(synced.length, 1);
      journal.append({ kind: "complete", task_id: "b", fencing_token: "1", result: null });
      assert.equal(synced.length, 2);
    } finally {
      realFs.fsyncSync = original;
    }
  });

  it("replays what an earlier process appended, and continues its numbering", () => {
    const first = new Journal(dir, "w1", at);
    first.append({ kind: "complete", task_id: "a", fencing_token: "1", result: 1 });
    first.append({ kind: "complete", task_id: "b", fencing_token: "2", result: 2 });
    const second = new Journal(dir, "w1", at);
    assert.deepEqual(second.load(), { entries: 2, tornTail: false, badLines: [] });
    assert.deepEqual(second.entries.map((e) => [e.seq, e.task_id]), [[1, "a"], [2, "b"]]);
    assert.equal(second.append({ kind: "complete", task_id: "c", fencing_token: "3", result: 3 }).seq, 3);
  });

  it("a missing file is an empty journal", () => {
    const journal = new Journal(dir, "nobody", at);
    assert.deepEqual(journal.load(), { entries: 0, tornTail: false, badLines: [] });
    assert.equal(journal.size, 0);
  });

  it("drops a torn last line and rewrites the file so the next append starts on a clean line", () => {
    const file = path.join(dir, "w1.journal");
    const journal = new Journal(dir, "w1", at);
    journal.append({ kind: "complete", task_id: "a", fencing_token: "1", result: "x" });
    fs.appendFileSync(file, '{"seq":2,"kind":"complete","task_id":"b","fenc'); // the process died mid-write
    const reloaded = new Journal(dir, "w1", at);
    assert.deepEqual(reloaded.load(), { entries: 1, tornTail: true, badLines: [] });
    reloaded.append({ kind: "complete", task_id: "c", fencing_token: "3", result: null });
    const again = new Journal(dir, "w1", at);
    assert.deepEqual(again.load(), { entries: 2, tornTail: false, badLines: [] });
    assert.deepEqual(again.entries.map((e) => e.task_id), ["a", "c"]);
    assert.ok(fs.readFileSync(file, "utf8").endsWith("\n"));
  });

  it("keeps a complete last entry that lost only its newline", () => {
    const file = path.join(dir, "w1.journal");
    fs.writeFileSync(file, '{"seq":4,"kind":"complete","task_id":"a","fencing_token":"1","result":null,"at":"2025-01-01T00:00:00Z"}');
    const journal = new Journal(dir, "w1", at);
    assert.deepEqual(journal.load(), { entries: 1, tornTail: false, badLines: [] });
    assert.equal(journal.append({ kind: "complete", task_id: "b", fencing_token: "1", result: null }).seq, 5);
    assert.equal(fs.readFileSync(file, "utf8").split("\n").length, 3);
  });

  it("drops (and reports) an unreadable line in the middle", () => {
    const file = path.join(dir, "w1.journal");
    fs.writeFileSync(
      file,
      '{"seq":1,"kind":"complete","task_id":"a","fencing_token":"1","result":null,"at":"x"}\n' +
        "garbage\n" +
        '{"seq":3,"kind":"fail","task_id":"b","fencing_token":"2","error":{"code":"E","message":"","retryable":false},"at":"x"}\n',
    );
    const journal = new Journal(dir, "w1", at);
    assert.deepEqual(journal.load(), { entries: 2, tornTail: false, badLines: [2] });
    assert.deepEqual(journal.entries.map((e) => e.kind), ["complete", "fail"]);
  });

  it("compacts after a replay: rewrites what is left through a temporary file and a rename", () => {
    const file = path.join(dir, "w1.journal");
    const journal = new Journal(dir, "w1", at);
    for (const id of ["a", "b", "c", "d"]) journal.append({ kind: "complete", task_id: id, fencing_token: "1", result: null });
    const inodeBefore = fs.statSync(file).ino;
    journal.remove([1, 3]);
    assert.notEqual(fs.statSync(file).ino, inodeBefore, "a new file was renamed over the old one");
    assert.deepEqual(fs.readdirSync(dir), ["w1.journal"], "no temporary file is left behind");
    const reloaded = new Journal(dir, "w1", at);
    reloaded.load();
    assert.deepEqual(reloaded.entries.map((e) => [e.seq, e.task_id]), [[2, "b"], [4, "d"]]);
    journal.remove([2, 4]);
    assert.equal(fs.readFileSync(file, "utf8"), "");
  });

  it("refuses a worker name that is not a safe file name", () => {
    assert.throws(() => new Journal(dir, "../evil"), /safe file name/);
  });
});
