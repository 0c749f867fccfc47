using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using QueueTask = Lifeline.Queue.V1.Task;

namespace Lifeline.Workers.Tests;

/// <summary>How to start one library's demo worker as a process: the program and the arguments before the common flags.</summary>
public sealed record DemoWorkerCommand(string FileName, IReadOnlyList<string> Prefix, IReadOnlyDictionary<string, string?>? Environment = null)
{
    public static DemoWorkerCommand Python { get; } = new("/usr/bin/python3",
        [Path.Combine(BuiltAssemblies.RepositoryRoot, "services", "workers", "python", "example_worker.py")],
        new Dictionary<string, string?> { ["PYTHONUNBUFFERED"] = "1" });

    public static DemoWorkerCommand Node { get; } = new("node",
        [Path.Combine(BuiltAssemblies.RepositoryRoot, "services", "workers", "node", "dist", "examples", "demo-worker.js")]);

    public static DemoWorkerCommand Dotnet { get; } = new(BuiltAssemblies.DotnetHost(),
        [BuiltAssemblies.Find("services/workers/dotnet/Lifeline.DemoWorker", "Lifeline.DemoWorker")]);
}

/// <summary>
/// One test's scratch directory (worker logs, journal directory, ledger) and the demo-worker processes it starts with
/// the common flags of services/workers/README.md; the test disposes (kills) the processes it starts.
/// </summary>
public sealed class WorkerRun : IDisposable
{
    private readonly DemoWorkerCommand _command;
    private int _started;

    public WorkerRun(DemoWorkerCommand command, string name)
    {
        _command = command;
        Directory = System.IO.Directory.CreateTempSubdirectory($"lifeline-worker-{name}-").FullName;
        JournalDirectory = Path.Combine(Directory, "journal");
        Ledger = Path.Combine(Directory, "ledger");
    }

    public string Directory { get; }

    public string JournalDirectory { get; }

    public string Ledger { get; }

    /// <summary>Starts the demo worker (demo.steps) as <paramref name="name"/> through the environment's proxy.</summary>
    public BackgroundProcess Start(WorkerEnvironment env, WorkerTenant tenant, string name, params string[] extra) =>
        Start(env.WorkerTarget, tenant, name, extra);

    public BackgroundProcess Start(Uri target, WorkerTenant tenant, string name, params string[] extra)
    {
        string[] arguments =
        [
            .. _command.Prefix, "--target", target.ToString(), "--api-key", tenant.WorkerKey, "--types", "demo.steps",
            "--name", name, "--journal-dir", JournalDirectory, "--ledger", Ledger, .. extra,
        ];
        var log = Path.Combine(Directory, $"{name}.{Interlocked.Increment(ref _started).ToString(CultureInfo.InvariantCulture)}.log");
        return BackgroundProcess.Start(_command.FileName, arguments, Directory, log, _command.Environment);
    }

    /// <summary>The journal file of the worker named <paramref name="name"/> (the name is safe as a file name in these tests).</summary>
    public string JournalPath(string name) => Path.Combine(JournalDirectory, name + ".journal");

    /// <summary>Non-empty lines in the worker's journal (0 when it has none).</summary>
    public int JournalLines(string name) =>
        File.Exists(JournalPath(name)) ? File.ReadAllLines(JournalPath(name)).Count(l => l.Length > 0) : 0;

    /// <summary>Completion entries in the worker's journal; a torn last line does not count.</summary>
    public int JournalCompletions(string name)
    {
        if (!File.Exists(JournalPath(name)))
        {
            return 0;
        }

        var count = 0;
        foreach (var line in File.ReadAllLines(JournalPath(name)).Where(l => l.Length > 0))
        {
            try
            {
                using var entry = JsonDocument.Parse(line);
                if (entry.RootElement.GetProperty("kind").GetString() == "complete"
                    && entry.RootElement.GetProperty("fencing_token").ValueKind == JsonValueKind.String)
                {
                    count++;
                }
            }
            catch (JsonException)
            {
                // a torn line
            }
        }

        return count;
    }

    public void Dispose()
    {
        if (Environment.GetEnvironmentVariable("LIFELINE_KEEP_WORKER_LOGS") is { Length: > 0 })
        {
            return; // kept for a look at the workers' logs and journals
        }

        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Waiting on and describing worker processes and their tasks.</summary>
public static class WorkerProcesses
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(90);

    /// <summary>The tasks as they are now.</summary>
    public static async Task<IReadOnlyList<QueueTask>> TasksAsync(WorkerTenant tenant, IReadOnlyList<string> ids) =>
        await tenant.WaitUntilFinalAsync(ids, TimeSpan.Zero);

    /// <summary>Waits until the worker holds every task, started (<c>running</c>).</summary>
    public static Task WaitUntilAllRunningAsync(WorkerTenant tenant, IReadOnlyList<string> ids, BackgroundProcess worker) =>
        WaitForAsync($"all {ids.Count} tasks leased and running", worker,
            async () => (await TasksAsync(tenant, ids)).All(t => t.Status == Lifeline.Queue.V1.TaskStatus.Running));

    /// <summary>Every task completed, and the queue's history holds exactly one completion of each.</summary>
    public static async Task AssertEachCompletedOnceAsync(WorkerTenant tenant, IReadOnlyList<QueueTask> tasks, string context)
    {
        Assert.True(tasks.All(t => t.Status == Lifeline.Queue.V1.TaskStatus.Completed), $"not all completed: {Describe(tasks)}\n{context}");
        foreach (var task in tasks)
        {
            Assert.Equal(1, await tenant.CompletionsAsync(task.Id));
        }
    }

    /// <summary>The queue's unary calls a worker makes for tasks it holds or leases, when it does not use its dispatch stream.</summary>
    public static readonly string[] UnaryTaskCalls =
    [
        "LeaseTasks", "StartTask", "CompleteTask", "CompleteTasks", "FailTask", "ReportProgress", "ExtendLease", "ReleaseTask",
    ];

    /// <summary>
    /// The worker took its tasks from a dispatch stream and sent everything about them on it: no LeaseTasks and no unary
    /// holder call with the tenant's worker key reached the gateway, and the queue's history shows each task leased once.
    /// </summary>
    public static async Task AssertOnlyTheDispatchStreamWasUsedAsync(WorkerEnvironment env, WorkerTenant tenant, IReadOnlyList<QueueTask> tasks, string log)
    {
        var unary = UnaryTaskCalls.Select(m => (Method: m, Calls: env.GatewayCalls(tenant, "QueueService/" + m))).Where(c => c.Calls > 0).ToList();
        Assert.True(unary.Count == 0, $"unary calls: {string.Join(", ", unary.Select(c => $"{c.Method} ×{c.Calls}"))}\n{log}");
        Assert.True(env.GatewayCalls(tenant, "QueueService/Dispatch") >= 1, $"no dispatch stream was opened\n{log}");
        foreach (var task in tasks)
        {
            Assert.Equal(1, await tenant.EventsAsync(task.Id, "leased"));
        }
    }

    /// <summary>
    /// Resets every connection through <paramref name="proxy"/> every 300 ms for <paramref name="duration"/>, with 100 ms
    /// of latency each way meanwhile: a request and its answer take longer than the gap between two cuts' effects, so some
    /// cuts fall between a request's arrival and its answer's (applied, not acknowledged).
    /// </summary>
    public static async Task CutConnectionsAsync(FaultProxy proxy, TimeSpan duration)
    {
        proxy.Latency(TimeSpan.FromMilliseconds(100));
        try
        {
            var until = DateTime.UtcNow + duration;
            while (DateTime.UtcNow < until)
            {
                proxy.ResetAll();
                await Task.Delay(300);
            }
        }
        finally
        {
            proxy.Latency(TimeSpan.Zero);
        }
    }

    /// <summary>Polls <paramref name="condition"/>; fails with the worker's log when it exits or the time runs out.</summary>
    public static async Task WaitForAsync(string what, BackgroundProcess worker, Func<Task<bool>> condition, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? Patience);
        while (!await condition())
        {
            if (worker.HasExited)
            {
                Assert.Fail($"the worker exited while waiting for {what}; its log:\n{worker.LogTail(80)}");
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out waiting for {what}; worker log:\n{worker.LogTail(80)}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>The same, with the condition first.</summary>
    public static Task WaitForAsync(Func<Task<bool>> condition, BackgroundProcess worker, string what, TimeSpan? timeout = null) =>
        WaitForAsync(what, worker, condition, timeout);

    /// <summary>SIGTERM, the graceful stop; returns the worker's whole log once it has exited.</summary>
    public static async Task<string> StopAsync(BackgroundProcess worker)
    {
        if (!worker.HasExited)
        {
            using var kill = Process.Start("/bin/kill", ["-TERM", worker.Pid.ToString(CultureInfo.InvariantCulture)]);
            await kill.WaitForExitAsync();
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (!worker.HasExited && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }

        return await File.ReadAllTextAsync(worker.LogFile);
    }

    /// <summary>The worker's last <c>done: …</c> line (its counters).</summary>
    public static string DoneLine(string log) =>
        log.Split('\n').LastOrDefault(l => l.StartsWith("done: ", StringComparison.Ordinal)) ?? $"(no done line)\n{log}";

    public static string Describe(IEnumerable<QueueTask> tasks, params BackgroundProcess[] workers) =>
        string.Join('\n', tasks.Select(t => $"{t.Id} {t.Status} token {t.FencingToken} retries {t.RetryCount}"))
        + string.Concat(workers.Select(w => $"\nworker log ({w.Pid}):\n{w.LogTail(80)}"));
}
