using System.Diagnostics;
using System.Text;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios;

/// <summary>The gateway the worker-library rows' workers talk to, their API key (role worker, the run's tenant), and where their warnings go.</summary>
internal sealed record LibraryAccess(Uri Gateway, string ApiKey, Lifeline.Testing.CapturedLogs Logs);

/// <summary>
/// What every queue row needs: the shared channel, the target (memory, CPU), the profile, the pass it belongs to, the
/// queue's own database when this run started the service (statistics, backlog cuts, clean-up; null for an existing
/// service), and checks against the queue's own counts.
/// </summary>
/// <param name="CpuSources">The processes a row's CPU is read from (the worker-library rows add the registry).</param>
internal sealed record ScenarioContext(
    QueueConnection Connection, ServiceTarget Target, QueueProfile Profile, string Pass, QueueDatabase? Database, CpuSources CpuSources)
{
    /// <summary>Where the worker-library rows' workers connect (the gateway, with a worker key); null on the main queue service.</summary>
    public LibraryAccess? Library { get; init; }

    /// <summary>Why the dispatch rows cannot run on this service (it answered UNIMPLEMENTED); null when it dispatches.</summary>
    public string? DispatchUnavailable { get; init; }

    public string Tenant => Connection.Tenant;

    /// <summary>The task type of row <paramref name="id"/> in this pass: each pass's tasks are apart.</summary>
    public string TaskTypeOf(string id) => Pass == "warm" ? id : $"{id}:{Pass.Replace(' ', '-').Replace(",", "", StringComparison.Ordinal)}";

    /// <summary>Fails fast, with the reason, when the service does not answer at all (rather than every row timing out).</summary>
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

    /// <summary>The queue's own per-status counts of <paramref name="taskType"/> (GetQueueStats).</summary>
    public async Task<IReadOnlyDictionary<TaskStatus, long>> StoredCountsAsync(string taskType, CancellationToken ct)
    {
        var stats = await Connection.Queue.GetQueueStatsAsync(new GetQueueStatsRequest { Type = taskType }, QueueConnection.Call(ct));
        return stats.Counts.Where(c => c.Type == taskType).GroupBy(c => c.Status).ToDictionary(g => g.Key, g => g.Sum(c => c.Count));
    }

    /// <summary>
    /// Compares the queue's own per-status counts for <paramref name="taskType"/> (GetQueueStats) with
    /// what the scenario expects: exactly <paramref name="expected"/> tasks, all in <paramref name="status"/>.
    /// </summary>
    public async Task<(bool Ok, string Text)> CheckStoredCountsAsync(string taskType, TaskStatus status, long expected, CancellationToken ct)
    {
        var counts = await StoredCountsAsync(taskType, ct);
        var matching = counts.GetValueOrDefault(status);
        if (matching == expected && counts.Count(c => c.Value > 0) == (expected == 0 ? 0 : 1))
        {
            return (true, $"{expected:N0} {Name(status)}");
        }

        return (false, $"stored: {Describe(counts)}; expected {expected:N0} {Name(status)}");
    }

    /// <summary>Waits until no task of <paramref name="taskType"/> is assigned or running (every leased task ended); false on timeout.</summary>
    public async Task<bool> WaitUntilNoneLeasedAsync(string taskType, TimeSpan timeout, CancellationToken ct)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var counts = await StoredCountsAsync(taskType, ct);
            if (counts.GetValueOrDefault(TaskStatus.Assigned) == 0 && counts.GetValueOrDefault(TaskStatus.Running) == 0)
            {
                return true;
            }

            if (deadline.Elapsed > timeout)
            {
                return false;
            }

            await Task.Delay(50, ct);
        }
    }

    public static string Describe(IReadOnlyDictionary<TaskStatus, long> counts)
    {
        var found = new StringBuilder();
        foreach (var (s, n) in counts.Where(c => c.Value > 0).OrderBy(c => c.Key))
        {
            found.Append(found.Length == 0 ? "" : ", ").Append(n.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)).Append(' ').Append(Name(s));
        }

        return found.Length == 0 ? "none" : found.ToString();
    }

    public static string Name(TaskStatus status) => status.ToString().ToLowerInvariant();
}
