using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Dispatch;
using Lifeline.Benchmarks.Scenarios.Processing;
using Lifeline.Benchmarks.Scenarios.WorkerLibrary;

namespace Lifeline.Benchmarks.Scenarios;

/// <summary>The steps every queue row shares: its workers, the planner statistics before and after it, its clean-up.</summary>
internal static class RowSupport
{
    /// <summary>How long a row waits for the queue's statistics keeper to catch up with the row's backlog (its interval is 5 s).</summary>
    private static readonly TimeSpan StatisticsPatience = TimeSpan.FromSeconds(15);

    /// <summary>Dispatch streams live at most this long beyond a row's own timeout (every call has a deadline).</summary>
    private static readonly TimeSpan StreamSlack = TimeSpan.FromMinutes(1);

    /// <summary>The workers of a row, by path; the library's register with the registry before this returns.</summary>
    public static async Task<IRowWorkers> CreateWorkersAsync(
        ScenarioContext context, TaskPath path, string taskType, int workers, int batchSize, int slots, TaskLedger ledger, MeasurementWindow window,
        Action<string>? onTask, CancellationToken ct)
    {
        switch (path)
        {
            case TaskPath.LeaseAndStart or TaskPath.ThreeCalls:
                return new WorkerPool(context.Connection, taskType, workers, path, batchSize, ledger, window, onTask);
            case TaskPath.Dispatch:
                return new DispatchPool(context.Connection, taskType, workers, slots, ledger, window, context.Profile.RowTimeout + StreamSlack, onTask);
            case TaskPath.WorkerLibrary:
                var library = context.Library ?? throw new InvalidOperationException("A worker-library row needs the gateway (LibraryAccess).");
                var name = $"bench-{taskType.Replace(':', '-')}";
                return await LibraryWorkers.StartAsync(library, taskType, name, workers, slots, ledger, onTask, ct);
            default:
                throw new ArgumentOutOfRangeException(nameof(path), path, null);
        }
    }

    /// <summary>
    /// The statistics of <c>tasks</c> as the row starts. A warm row first waits (up to 15 s) for the queue's own keeper
    /// to analyze the table after the row's backlog arrived, and says so when it did not; the cold row only looks.
    /// </summary>
    public static async Task<(TableStatistics? Statistics, string? Note)> StatisticsAtStartAsync(ScenarioContext context, bool wait, CancellationToken ct)
    {
        if (context.Database is not { } database)
        {
            return (null, null);
        }

        if (!wait)
        {
            return (await database.ReadStatisticsAsync(ct), null);
        }

        var (statistics, waited) = await database.WaitForCurrentStatisticsAsync(StatisticsPatience, ct);
        return statistics.Current
            ? (statistics, null)
            : (statistics, $"statistics STALE at start: the queue's keeper had not analyzed tasks {waited:0} s after the row's backlog arrived");
    }

    /// <summary>
    /// After a row: what happened to the statistics during it; then a measured row's tasks are removed, so every row
    /// starts from the same table — the cold row's and the warm-ups' completed tasks, which stay. (A table emptied
    /// and vacuumed is no fair start: with reltuples 0 and its pages still there, PostgreSQL estimates it empty however
    /// much is inserted, until the next ANALYZE — a foreign-key check per inserted history row then scanned a whole
    /// index of tasks, and a 100,000-row insert took minutes.)
    /// </summary>
    public static async Task<string?> FinishAsync(ScenarioContext context, string taskType, TableStatistics? atStart, bool remove, CancellationToken ct)
    {
        if (context.Database is not { } database)
        {
            return null;
        }

        var during = atStart is null ? null : (await database.ReadStatisticsAsync(ct)).ChangesSince(atStart);
        if (remove)
        {
            await database.RemoveTasksAsync(context.Tenant, taskType, ct);
        }

        return during;
    }

    /// <summary>Waits until the workers' own count has caught up with what the queue stored (the last answers may still be on their way).</summary>
    public static async Task WaitForCountAsync(Func<long> count, long stored, CancellationToken ct)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (count() < stored && DateTime.UtcNow < deadline)
        {
            await Task.Delay(20, ct);
        }
    }

    public static string Describe(TaskPath path, int workers, int batchSize, int slots) => path switch
    {
        TaskPath.LeaseAndStart when batchSize == 1 => $"LeaseTasks(start, max 1) → CompleteTask, {workers} workers",
        TaskPath.LeaseAndStart => $"LeaseTasks(start, max {batchSize}) → CompleteTasks, {workers} workers",
        TaskPath.ThreeCalls when batchSize == 1 => $"LeaseTasks → StartTask → CompleteTask, {workers} workers",
        TaskPath.ThreeCalls => $"LeaseTasks(max {batchSize}) → StartTask each → CompleteTasks, {workers} workers",
        TaskPath.Dispatch => $"Dispatch stream, complete on the stream, {workers} workers × {slots} slot{(slots == 1 ? "" : "s")}",
        TaskPath.WorkerLibrary => $".NET worker library (defaults) via gateway, {workers} worker{(workers == 1 ? "" : "s")} × {slots} slots",
        _ => path.ToString(),
    };
}
