import * as fs from "node:fs";
import * as path from "node:path";

/** An error as the journal keeps it (and FailTask sends it). */
export interface JournalError {
  code: string;
  message: string;
  retryable: boolean;
  details?: Record<string, string>;
  /** FailTask's `retry_after`, when the handler gave one. */
  retry_after_ms?: number;
}

/** Progress as the journal keeps it (ReportProgress). */
export interface JournalProgress {
  percent: number;
  message: string;
}

/**
 * One journal line (README, "Journal"):
 * `{"seq":N,"kind":"complete"|"fail"|"progress","task_id":…,"fencing_token":"…","result"|"error"|"progress":…,"at":"RFC 3339"}`.
 * `result` is the task's result as a JSON value (null: no result); `fencing_token` is the int64 as a string.
 */
export type JournalEntry =
  | { seq: number; kind: "complete"; task_id: string; fencing_token: string; result: unknown; at: string }
  | { seq: number; kind: "fail"; task_id: string; fencing_token: string; error: JournalError; at: string }
  | { seq: number; kind: "progress"; task_id: string; fencing_token: string; progress: JournalProgress; at: string };

/** An entry before the journal numbers and stamps it. */
export type NewJournalEntry =
  | { kind: "complete"; task_id: string; fencing_token: string; result: unknown }
  | { kind: "fail"; task_id: string; fencing_token: string; error: JournalError }
  | { kind: "progress"; task_id: string; fencing_token: string; progress: JournalProgress };

export interface JournalLoadReport {
  /** Entries read. */
  entries: number;
  /** A last line cut short (the process died while writing it): dropped. */
  tornTail: boolean;
  /** Other lines that are not a journal entry: dropped, with their line numbers. */
  badLines: number[];
}

/**
 * The offline journal: one JSON-lines file per worker name, `<dir>/<name>.journal`. Every append is written and
 * fsynced before it returns (the outcome counts as kept only then); `remove` rewrites the file with what is left
 * through a temporary file that is fsynced and renamed over it. All file work is synchronous: an append is one
 * small write plus an fsync, and nothing else may run in between.
 */
export class Journal {
  readonly path: string;
  private readonly dir: string;
  private entriesInOrder: JournalEntry[] = [];
  private nextSeq = 1;

  constructor(dir: string, workerName: string, private readonly now: () => Date = () => new Date()) {
    if (!/^[A-Za-z0-9._-]+$/.test(workerName)) throw new Error(`journal: worker name '${workerName}' is not a safe file name`);
    this.dir = path.resolve(dir);
    this.path = path.join(this.dir, `${workerName}.journal`);
  }

  /** The entries not yet delivered, oldest first (a copy). */
  get entries(): JournalEntry[] {
    return [...this.entriesInOrder];
  }

  get size(): number {
    return this.entriesInOrder.length;
  }

  /**
   * Reads the file (a missing file is an empty journal). A torn last line — the process died in the middle of an
   * append, before its fsync returned, so that outcome was never counted as kept — is dropped, as is any other line
   * that is not an entry; the file is then rewritten without them, so the next append starts on a clean line.
   */
  load(): JournalLoadReport {
    let text: string;
    try {
      text = fs.readFileSync(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        this.entriesInOrder = [];
        this.nextSeq = 1;
        return { entries: 0, tornTail: false, badLines: [] };
      }
      throw error;
    }
    const lines = text.split("\n");
    const endsClean = text.length === 0 || text.endsWith("\n");
    if (endsClean) lines.pop(); // the empty string after the last newline
    const entries: JournalEntry[] = [];
    const badLines: number[] = [];
    let tornTail = false;
    lines.forEach((line, index) => {
      if (line.trim() === "") return;
      const entry = parseEntry(line);
      if (entry) {
        entries.push(entry);
      } else if (index === lines.length - 1 && !endsClean) {
        tornTail = true;
      } else {
        badLines.push(index + 1);
      }
    });
    this.entriesInOrder = entries;
    this.nextSeq = entries.reduce((max, e) => Math.max(max, e.seq), 0) + 1;
    if (!endsClean || badLines.length > 0) this.rewrite();
    return { entries: entries.length, tornTail, badLines };
  }

  /** Appends one entry and fsyncs it; returns it numbered and stamped. */
  append(entry: NewJournalEntry): JournalEntry {
    const full = { seq: this.nextSeq, ...entry, at: this.now().toISOString() } as JournalEntry;
    fs.mkdirSync(this.dir, { recursive: true });
    const fd = fs.openSync(this.path, "a", 0o600);
    try {
      fs.writeSync(fd, serialize(full) + "\n");
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    this.nextSeq += 1;
    this.entriesInOrder.push(full);
    return full;
  }

  /** Removes the entries with these sequence numbers and rewrites the file with what is left. */
  remove(seqs: Iterable<number>): void {
    const gone = new Set(seqs);
    if (gone.size === 0) return;
    const before = this.entriesInOrder.length;
    this.entriesInOrder = this.entriesInOrder.filter((e) => !gone.has(e.seq));
    if (this.entriesInOrder.length !== before) this.rewrite();
  }

  /** Writes the entries kept in memory to a temporary file, fsyncs it, renames it over the journal, fsyncs the directory. */
  rewrite(): void {
    fs.mkdirSync(this.dir, { recursive: true });
    const temporary = `${this.path}.${process.pid}.tmp`;
    const fd = fs.openSync(temporary, "w", 0o600);
    try {
      const text = this.entriesInOrder.map((e) => serialize(e) + "\n").join("");
      if (text.length > 0) fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temporary, this.path);
    try {
      const dirFd = fs.openSync(this.dir, "r");
      try {
        fs.fsyncSync(dirFd);
      } finally {
        fs.closeSync(dirFd);
      }
    } catch {
      // some file systems cannot fsync a directory; the rename itself is atomic
    }
  }
}

/** Keys in the README's order: seq, kind, task_id, fencing_token, result|error|progress, at. */
function serialize(entry: JournalEntry): string {
  const { seq, kind, task_id, fencing_token, at } = entry;
  switch (entry.kind) {
    case "complete":
      return JSON.stringify({ seq, kind, task_id, fencing_token, result: entry.result ?? null, at });
    case "fail":
      return JSON.stringify({ seq, kind, task_id, fencing_token, error: entry.error, at });
    case "progress":
      return JSON.stringify({ seq, kind, task_id, fencing_token, progress: entry.progress, at });
  }
}

function parseEntry(line: string): JournalEntry | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const e = value as Record<string, unknown>;
  if (!Number.isSafeInteger(e.seq) || typeof e.task_id !== "string" || typeof e.at !== "string") return undefined;
  const token = typeof e.fencing_token === "number" ? String(e.fencing_token) : e.fencing_token;
  if (typeof token !== "string" || !/^-?\d+$/.test(token)) return undefined;
  const base = { seq: e.seq as number, task_id: e.task_id, fencing_token: token, at: e.at };
  switch (e.kind) {
    case "complete":
      return "result" in e ? { ...base, kind: "complete", result: e.result } : undefined;
    case "fail": {
      const error = e.error as JournalError | undefined;
      return error && typeof error.code === "string" ? { ...base, kind: "fail", error } : undefined;
    }
    case "progress": {
      const progress = e.progress as JournalProgress | undefined;
      return progress && typeof progress.percent === "number" ? { ...base, kind: "progress", progress } : undefined;
    }
    default:
      return undefined;
  }
}
