import { strict as assert } from "node:assert";
import { Metadata, status } from "@grpc/grpc-js";
import { describe, it } from "node:test";
import { TaskFailed, describe as describeError, isTransient, reasonOf } from "../src/errors";
import { ErrorInfo, Status } from "../src/generated/google/rpc/status";

function rpcError(code: number, details = "", reason?: string) {
  const metadata = new Metadata();
  if (reason) {
    const info = ErrorInfo.encode({ reason, domain: "lifeline", metadata: {} }).finish();
    const bytes = Status.encode({ code, message: details, details: [{ typeUrl: "type.googleapis.com/google.rpc.ErrorInfo", value: Buffer.from(info) }] }).finish();
    metadata.set("grpc-status-details-bin", Buffer.from(bytes));
  }
  return Object.assign(new Error(`${code} ${details}`), { code, details, metadata });
}

describe("retry classification", () => {
  it("UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and ABORTED are transient", () => {
    for (const code of [status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED, status.ABORTED]) {
      assert.equal(isTransient(rpcError(code)), true, status[code]);
    }
  });

  it("everything else is a final refusal", () => {
    for (const code of [
      status.FAILED_PRECONDITION,
      status.NOT_FOUND,
      status.INVALID_ARGUMENT,
      status.PERMISSION_DENIED,
      status.UNAUTHENTICATED,
      status.ALREADY_EXISTS,
      status.UNIMPLEMENTED,
      status.OUT_OF_RANGE,
      status.INTERNAL,
      status.UNKNOWN,
      status.CANCELLED,
    ]) {
      assert.equal(isTransient(rpcError(code, "refused")), false, status[code]);
    }
  });

  it("a reset connection is transient whatever code grpc-js gives it", () => {
    assert.equal(isTransient(rpcError(status.INTERNAL, "Received RST_STREAM with code 2 triggered by internal client error")), true);
    assert.equal(isTransient(rpcError(status.UNKNOWN, "read ECONNRESET")), true);
    assert.equal(isTransient(new Error("socket hang up")), true, "no status at all: a network error");
  });

  it("reads the ErrorInfo reason and describes the refusal", () => {
    const error = rpcError(status.FAILED_PRECONDITION, "lease superseded", "STALE_FENCING_TOKEN");
    assert.equal(reasonOf(error), "STALE_FENCING_TOKEN");
    assert.equal(describeError(error), "FAILED_PRECONDITION: lease superseded [STALE_FENCING_TOKEN]");
    assert.equal(reasonOf(rpcError(status.UNAVAILABLE, "down")), "");
  });

  it("TaskFailed carries code, retryable and retryAfterMs", () => {
    const failure = new TaskFailed("HTTP_503", "upstream down", { retryable: true, retryAfterMs: 2500 });
    assert.equal(failure.code, "HTTP_503");
    assert.equal(failure.retryable, true);
    assert.equal(failure.retryAfterMs, 2500);
    assert.equal(new TaskFailed("X", "y").retryable, false);
  });
});
