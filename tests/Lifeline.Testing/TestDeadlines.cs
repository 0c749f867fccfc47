using Grpc.Core;
using Grpc.Core.Interceptors;
using Lifeline.ServiceDefaults.Grpc;

namespace Lifeline.Testing;

/// <summary>
/// Every gRPC call a test makes carries a deadline: a call that hangs fails within a minute with
/// DEADLINE_EXCEEDED in the test that made it, instead of hanging the test run.
/// </summary>
public static class TestDeadlines
{
    /// <summary>Unary calls: generous for a loaded two-core machine, short next to a test's own timeout.</summary>
    public static readonly TimeSpan Unary = TimeSpan.FromSeconds(60);

    /// <summary>Streams (watches, heartbeat streams, backups): long, but not forever.</summary>
    public static readonly TimeSpan Streaming = TimeSpan.FromMinutes(5);

    private static readonly DefaultDeadline Interceptor = new(Unary, Streaming);

    /// <summary>A call invoker over <paramref name="channel"/> that adds the deadlines above to calls without one.</summary>
    public static CallInvoker WithDeadlines(this ChannelBase channel) => channel.Intercept(Interceptor);
}
