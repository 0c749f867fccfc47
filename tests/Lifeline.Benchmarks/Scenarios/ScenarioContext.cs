using System.Diagnostics;
using System.Text;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios;

/// <summary>What every scenario needs: the shared channel, the target (for memory), the profile, and checks against the queue's own counts.</summary>
internal sealed class ScenarioContext(QueueConnection connection, ServiceTarget target, BenchmarkProfile profile)
{
    public QueueConnection Connection { get; } = connection;

    public ServiceTarget Target { get; } = target;

    public BenchmarkProfile Profile { get; } = profile;

    /// <summary>Fails fast, with the reason, when the service does not answer at all (rather than every scenario timing out).</summary>
    public async Task EnsureReachableAsync(CancellationToken ct)
    {
        try
        {
            await Connection.Queue.GetQueueStatsAsync(new GetQueueStatsRequest(), deadline: DateTime.UtcNow.AddSeconds(10), cancellationToken: ct);
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            throw new InvalidOperationException($"The queue service at {Target.Url} does not answer GetQueueStats: {ex.StatusCode} {ex.Status.Detail}", ex);
        }
    }

    public static double SecondsSince(long startTimestamp, long endTimestamp) =>
        (endTimestamp - startTimestamp) / (double)Stopwatch.Frequency;

    /// <summary>
    /// Compares the queue's own per-status counts for <paramref name="taskType"/> (GetQueueStats) with
    /// what the scenario expects: exactly <paramref name="expected"/> tasks, all in <paramref name="status"/>.
    /// </summary>
    public async Task<(bool Ok, string Text)> CheckStoredCountsAsync(string taskType, TaskStatus status, int expected, CancellationToken ct)
    {
        var stats = await Connection.Queue.GetQueueStatsAsync(new GetQueueStatsRequest { Type = taskType }, QueueConnection.Call(ct));
        var counts = stats.Counts.Where(c => c.Type == taskType).ToDictionary(c => c.Status, c => c.Count);
        var matching = counts.GetValueOrDefault(status);
        if (matching == expected && counts.Count == (expected == 0 ? 0 : 1))
        {
            return (true, $"{expected} {Name(status)}");
        }

        var found = new StringBuilder();
        foreach (var (s, n) in counts.OrderBy(c => c.Key))
        {
            found.Append(found.Length == 0 ? "" : ", ").Append(n).Append(' ').Append(Name(s));
        }

        return (false, $"stored: {(found.Length == 0 ? "none" : found)}; expected {expected} {Name(status)}");
    }

    private static string Name(TaskStatus status) => status.ToString().ToLowerInvariant();
}
