import { Metadata, status as Status } from "@grpc/grpc-js";
import { ErrorInfo, Status as RpcStatus } from "./generated/google/rpc/status";

/**
 * Thrown by a handler to fail its task with a structured error (`FailTask`).
 *
 * `retryable: true` returns the task to pending after its backoff (until its retries run out), `retryAfterMs`
 * overriding that backoff once; `retryable: false` ends it as failed.
 */
export class TaskFailed extends Error {
  readonly code: string;
  readonly retryable: boolean;
  readonly retryAfterMs?: number;
  readonly details: Record<string, string>;

  constructor(
    code: string,
    message: string,
    options: { retryable?: boolean; retryAfterMs?: number; details?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = "TaskFailed";
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.retryAfterMs = options.retryAfterMs;
    this.details = { ...(options.details ?? {}) };
  }
}

/** What a failed gRPC call looks like to the worker (a grpc-js ServiceError, or anything thrown instead). */
export interface RpcFailure {
  code?: number;
  details?: string;
  message?: string;
  metadata?: Metadata;
}

const TRANSIENT = new Set<number>([
  Status.UNAVAILABLE,
  Status.DEADLINE_EXCEEDED,
  Status.RESOURCE_EXHAUSTED,
  Status.ABORTED,
]);

/**
 * grpc-js reports some connection losses that happen in the middle of a call (the peer reset the HTTP/2 stream or
 * the socket) as INTERNAL or UNKNOWN rather than UNAVAILABLE; the contract's "a reset or refused connection" is
 * transient whatever code the client library gives it.
 */
const CONNECTION_LOST = /RST_STREAM|ECONNRESET|ECONNREFUSED|EPIPE|socket hang up|Connection dropped|Connection closed|premature close|Stream refused|GOAWAY/i;

/**
 * The contract's classification: UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED and a reset or
 * refused connection are transient (retry, then journal); everything else is a final refusal (log once, count,
 * never retry). An error without a gRPC status (a network error thrown by the client library) is transient.
 */
export function isTransient(error: unknown): boolean {
  const code = (error as RpcFailure | undefined)?.code;
  if (typeof code !== "number") return true;
  if (TRANSIENT.has(code)) return true;
  if (code === Status.INTERNAL || code === Status.UNKNOWN) {
    const failure = error as RpcFailure;
    return CONNECTION_LOST.test(`${failure.details ?? ""} ${failure.message ?? ""}`);
  }
  return false;
}

/** The call was cancelled by this process (a long poll ended by stop or drain). */
export function isCancelled(error: unknown): boolean {
  return (error as RpcFailure | undefined)?.code === Status.CANCELLED;
}

/** The name of a status code: `UNAVAILABLE`, `FAILED_PRECONDITION`, … */
export function codeName(code: number | undefined): string {
  if (typeof code !== "number") return "ERROR";
  return (Status as unknown as Record<number, string>)[code] ?? `CODE_${code}`;
}

/**
 * A request on the queue's dispatch stream that did not succeed, shaped like the unary call's error: refused by its ack
 * (the ack's code, message and reason), or left unanswered by a stream that broke or stalled (UNAVAILABLE,
 * DEADLINE_EXCEEDED: transient, so the request is sent again — on the next stream or with the unary call).
 */
export class StreamCallError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
    readonly reason = "",
  ) {
    super(`${codeName(code)}: ${details}`);
    this.name = "StreamCallError";
  }
}

/** The `google.rpc.ErrorInfo` reason of a refusal (e.g. `STALE_FENCING_TOKEN`), or "". */
export function reasonOf(error: unknown): string {
  if (error instanceof StreamCallError) return error.reason;
  const metadata = (error as RpcFailure | undefined)?.metadata;
  if (!metadata || typeof metadata.get !== "function") return "";
  for (const value of metadata.get("grpc-status-details-bin")) {
    try {
      const status = RpcStatus.decode(typeof value === "string" ? Buffer.from(value, "base64") : value);
      for (const detail of status.details) {
        if (detail.typeUrl.endsWith("/google.rpc.ErrorInfo")) return ErrorInfo.decode(detail.value).reason;
      }
    } catch {
      // not a google.rpc.Status: no reason
    }
  }
  return "";
}

/** `CODE: message [REASON]` of a failed call. */
export function describe(error: unknown): string {
  const failure = error as RpcFailure | undefined;
  if (typeof failure?.code !== "number") return String((failure as Error | undefined)?.message ?? error);
  const reason = reasonOf(error);
  const text = String(failure.details ?? failure.message ?? "").replace(/\s+/g, " ").trim();
  return `${codeName(failure.code)}: ${text}${reason ? ` [${reason}]` : ""}`;
}
