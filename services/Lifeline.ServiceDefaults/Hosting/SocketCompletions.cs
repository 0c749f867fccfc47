namespace Lifeline.ServiceDefaults.Hosting;

/// <summary>
/// Where .NET runs the continuation of a completed socket operation. By default the thread that polls the sockets
/// (epoll) queues it to the thread pool; with <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=1</c> it runs it at once,
/// saving a thread hop and a wake-up per PostgreSQL answer, gRPC frame and Redis reply. A service whose hot path is a
/// chain of such answers (the queue's group commit: one round trip after the other) spends less CPU per task and waits
/// less between round trips. The price: code that blocks a thread in such a continuation stalls every socket of the
/// process, so a service that runs inline completes its socket work asynchronously only (no sync-over-async, no
/// synchronous Redis or Npgsql calls after startup).
/// </summary>
public static class SocketCompletions
{
    /// <summary>The runtime's switch, read once, when the process first uses a socket.</summary>
    public const string Variable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// Turns inline completions on unless the environment already sets <see cref="Variable"/> (<c>0</c> turns them off).
    /// Call it first thing in <c>Program.cs</c>, before any socket exists — not from a host built inside another process
    /// (tests), whose sockets were opened before and whose child processes would inherit the variable.
    /// </summary>
    public static void RunInlineUnlessConfigured()
    {
        if (Environment.GetEnvironmentVariable(Variable) is null)
        {
            Environment.SetEnvironmentVariable(Variable, "1");
        }
    }
}
