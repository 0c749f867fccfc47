using Lifeline.Gateway.Contracts;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>How a case reaches the suite: a gRPC call, a REST call, or raw HTTP/2 gRPC frames.</summary>
internal enum FuzzTransport
{
    Grpc,
    Rest,
    Framing,
}

/// <summary>What a correct suite does with a case.</summary>
internal enum FuzzExpectation
{
    /// <summary>Accepted, or refused with a status other than UNKNOWN/INTERNAL (gRPC: with google.rpc details; REST: not 5xx).</summary>
    CleanAnswer,

    /// <summary>No parser may accept it (unparseable protobuf, bad JSON, unknown fields, wrong JSON types): refused, cleanly.</summary>
    Refusal,

    /// <summary>Broken gRPC framing: refused with any status but UNKNOWN (INTERNAL allowed); no details required.</summary>
    FramingRefusal,
}

/// <summary>
/// One generated input for one RPC. <see cref="Build"/> makes its bytes from a <see cref="Baseline"/> seeded by the case
/// id, so a case is the same whichever order cases run in, and is built only when it runs (1 MiB strings are not held).
/// </summary>
/// <param name="Family">The kind of malformation, e.g. <c>string.nul</c>, <c>wire.truncated-varint</c>, <c>rest.unknown-field</c>.</param>
/// <param name="Field">The field path it targets (<c>task.payload</c>), or <c>-</c> for whole-message cases.</param>
/// <param name="Route">For REST cases: <c>POST /api/v1/tasks</c>.</param>
/// <param name="Heavy">Megabytes on the wire (1 MiB strings, 100,000 items): run few at a time.</param>
internal sealed record FuzzCase(
    int Id,
    RpcMethod Rpc,
    FuzzTransport Transport,
    string Family,
    string Field,
    FuzzExpectation Expectation,
    bool Heavy,
    string? Route,
    Func<Baseline, FuzzRequest> Build)
{
    /// <summary><c>QueueService/EnqueueTask</c>: the RPC without its package.</summary>
    public string RpcName => Rpc.FullName[(Rpc.FullName.LastIndexOf('.', Rpc.FullName.IndexOf('/', StringComparison.Ordinal)) + 1)..];

    /// <summary>A stream meant to stay open (WatchTasks, WatchWorkers): its deadline is its normal end.</summary>
    public bool IsOpenEnded => Rpc.Descriptor.IsServerStreaming && !Rpc.Descriptor.IsClientStreaming
        && Rpc.Descriptor.Name.StartsWith("Watch", StringComparison.Ordinal);

    public override string ToString() => $"#{Id} {RpcName} {Transport.ToString().ToLowerInvariant()} {Family} {Field}{(Route is null ? "" : $" [{Route}]")}";
}

internal abstract record FuzzRequest;

/// <summary>Request messages as raw protobuf: one for unary and server-streaming RPCs, the stream's messages otherwise.</summary>
internal sealed record GrpcRequest(IReadOnlyList<byte[]> Messages) : FuzzRequest;

/// <summary>A REST call: method, path with query (already percent-encoded), and the body's bytes (null: no body).</summary>
internal sealed record RestRequest(string Method, string PathAndQuery, byte[]? Body) : FuzzRequest;

/// <summary>An HTTP/2 request body sent as <c>application/grpc</c> exactly as given (length prefixes included).</summary>
internal sealed record FramingRequest(byte[] Body) : FuzzRequest;
