using Grpc.Core;

namespace Lifeline.Worker.Internal;

/// <summary>How a call about an outcome ended.</summary>
internal enum CallEnd
{
    /// <summary>The server accepted it.</summary>
    Answered = 0,

    /// <summary>The server refused it for good (<see cref="FailureKind.Final"/>).</summary>
    Refused = 1,

    /// <summary>It failed transiently and is not tried again (retries used up, offline, or the worker is stopping).</summary>
    GaveUp = 2,
}

/// <summary>The end of a call: the response, the refusal, or why it gave up.</summary>
internal readonly record struct CallResult<TResponse>(CallEnd End, TResponse? Response, RpcException? Refusal, string Reason)
    where TResponse : class
{
    public static CallResult<TResponse> Answered(TResponse response) => new(CallEnd.Answered, response, null, "");

    public static CallResult<TResponse> Refused(RpcException refusal) => new(CallEnd.Refused, null, refusal, RpcErrors.Describe(refusal));

    public static CallResult<TResponse> GaveUp(string reason) => new(CallEnd.GaveUp, null, null, reason);
}
