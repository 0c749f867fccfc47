using System.Diagnostics;
using System.Globalization;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios;

/// <summary>How the pending pass's backlog was put in place, and what the queue reported of it afterwards.</summary>
/// <param name="Queue">Which queue service's database: the main one, or the worker-library rows'.</param>
/// <param name="InsertSeconds">The SQL insert (tasks and their enqueued history).</param>
/// <param name="SettleSeconds">VACUUM (ANALYZE) and CHECKPOINT afterwards.</param>
internal sealed record PendingBacklogInfo(string Queue, string TaskType, long Tasks, double InsertSeconds, double SettleSeconds, long StoredPending, bool Verified);

/// <summary>
/// The pending pass's backlog: <see cref="QueueProfile.Pending"/> tasks of a type no row leases, in the run's tenant,
/// inserted directly into the queue's own database (<c>INSERT … SELECT generate_series</c>, 100,000 per transaction, each
/// with its <c>enqueued</c> history row, as EnqueueTasks stores them), then what a table that just grew by a million rows
/// needs so the rows that follow neither pay for it unknowingly nor skip it: VACUUM (ANALYZE) — the planner's statistics
/// and the visibility map, else an autovacuum would run during the rows — and a CHECKPOINT, so its writes do not either.
/// The queue's own GetQueueStats must then count them all as pending.
/// </summary>
internal static class PendingBacklog
{
    public const string TaskType = "backlog";

    public static async Task<PendingBacklogInfo> InsertAsync(ScenarioContext context, string label, CancellationToken ct)
    {
        var database = context.Database ?? throw new InvalidOperationException("The pending pass needs the queue's own database.");
        var count = context.Profile.Pending;
        var started = Stopwatch.GetTimestamp();
        var lastPrinted = started;
        await database.InsertPendingAsync(context.Tenant, TaskType, count, priority: 0, QueueProfile.PendingChunk, inserted =>
        {
            if (Stopwatch.GetElapsedTime(lastPrinted) > TimeSpan.FromSeconds(10) || inserted == count)
            {
                lastPrinted = Stopwatch.GetTimestamp();
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {label}: {inserted:N0} of {count:N0} pending tasks inserted ({Stopwatch.GetElapsedTime(started).TotalSeconds:0} s)"));
            }
        }, ct);
        var insertSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var settling = Stopwatch.GetTimestamp();
        await database.SettleAsync(ct);
        var settleSeconds = Stopwatch.GetElapsedTime(settling).TotalSeconds;
        var stored = (await context.StoredCountsAsync(TaskType, ct)).GetValueOrDefault(TaskStatus.Pending);
        return new PendingBacklogInfo(label, TaskType, count, insertSeconds, settleSeconds, stored, stored == count);
    }
}
