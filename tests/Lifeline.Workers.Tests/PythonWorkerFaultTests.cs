using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Xunit.Abstractions;
using static Lifeline.Workers.Tests.WorkerProcesses;
using QueueTask = Lifeline.Queue.V1.Task;
using QueueTaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Workers.Tests;

/// <summary>
/// The Python worker library (services/workers/python, run as <c>example_worker.py</c> processes running
/// <c>demo.steps</c>) against the real queue, registry and gateway, with the network between worker and gateway
/// broken by the <see cref="FaultProxy"/> (services/workers/README.md, "When the network fails"). The side-effect
/// ledger counts how often each task really ran; the queue's history how often it was completed. The worker takes its
/// tasks from the queue's dispatch stream unless told <c>--long-poll</c>; the gateway's request log tells which.
/// </summary>
public sealed class PythonWorkerFaultTests(WorkerEnvironment env, ITestOutputHelper output) : IClassFixture<WorkerEnvironment>, IDisposable
{
    private static readonly string PythonDirectory = Path.Combine(BuiltAssemblies.RepositoryRoot, "services", "workers", "python");
    private static readonly SemaphoreSlim StubsOnce = new(1, 1);
    private static bool _stubsGenerated;

    private readonly WorkerRun _run = new(DemoWorkerCommand.Python, "python");
    private readonly List<BackgroundProcess> _workers = [];

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_20_second_outage_while_handlers_finish_loses_no_outcome_and_runs_no_task_twice()
    {
        var tenant = env.NewTenant();
        var ids = await tenant.EnqueueStepsAsync(count: 6, steps: 8, stepMs: 500);
        var ledger = _run.Ledger;
        var worker = await StartWorkerAsync(tenant, "py-outage", ledger, leaseSeconds: 60);

        await WaitUntilAllRunningAsync(tenant, ids, worker);
        // The handlers finish about 4 s into the outage; their outcomes are retried for 10 s, then journaled.
        await env.Proxy.OutageAsync(TimeSpan.FromSeconds(20));

        var tasks = await tenant.WaitUntilFinalAsync(ids, TimeSpan.FromSeconds(90));
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, tasks, log);
        AssertRanOnceWithTheCompletedToken(ledger, tasks, log);
        Assert.Contains("connection retrying → offline", log, StringComparison.Ordinal);
        Assert.Contains("connection offline → syncing", log, StringComparison.Ordinal);
        Assert.Contains("connection syncing → connected", log, StringComparison.Ordinal);
        var done = DoneLine(log);
        Assert.Contains("6 completed", done, StringComparison.Ordinal);
        Assert.Contains("6 journaled, 6 replayed, 0 refused", done, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_outage_longer_than_the_lease_has_the_late_outcome_refused_as_stale_and_the_next_holder_completes_it_once()
    {
        var tenant = env.NewTenant();
        var ids = await tenant.EnqueueStepsAsync(count: 2, steps: 6, stepMs: 500);
        var ledger = _run.Ledger;
        var worker = await StartWorkerAsync(tenant, "py-late", ledger, leaseSeconds: 5);

        await WaitUntilAllRunningAsync(tenant, ids, worker);
        var firstTokens = (await TasksAsync(tenant, ids)).ToDictionary(t => t.Id, t => t.FencingToken);
        // The leases (5 s) run out during the outage; the queue takes the tasks back. The handlers still finish
        // and their outcomes go to the journal, to be refused when the network is back.
        await env.Proxy.OutageAsync(TimeSpan.FromSeconds(16));

        var tasks = await tenant.WaitUntilFinalAsync(ids, TimeSpan.FromSeconds(120));
        var log = await StopAsync(worker);
        Assert.True(tasks.All(t => t.Status == QueueTaskStatus.Completed), $"not all completed: {Describe(tasks)}\n{log}");
        foreach (var task in tasks)
        {
            Assert.Equal(1, await tenant.CompletionsAsync(task.Id));
            Assert.True(task.FencingToken > firstTokens[task.Id], $"task {task.Id} was completed with its first lease's token\n{log}");
            // The late outcome: refused, logged once, dropped.
            Assert.Equal(1, CountLines(log, task.Id, "completion refused, dropped"));
        }
        // Each task ran twice — once on the lease that ran out, once for its next holder — and the queue kept only
        // the second outcome, whose run is the ledger's entry with the completing token.
        var entries = Ledger.Read(ledger);
        foreach (var task in tasks)
        {
            var runs = entries.Where(e => e.TaskId == task.Id).Select(e => e.FencingToken).Order().ToList();
            Assert.True(runs.SequenceEqual([firstTokens[task.Id], task.FencingToken]),
                $"task {task.Id}: ledger tokens {string.Join(",", runs)}, first lease {firstTokens[task.Id]}, completed with {task.FencingToken}\n{log}");
        }
        var done = DoneLine(log);
        Assert.Contains("2 completed", done, StringComparison.Ordinal);
        Assert.Contains("2 journaled, 0 replayed, 2 refused", done, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_killed_while_offline_replays_its_journal_when_restarted_and_the_tasks_complete_without_running_again()
    {
        var tenant = env.NewTenant();
        var ids = await tenant.EnqueueStepsAsync(count: 4, steps: 4, stepMs: 500);
        var ledger = _run.Ledger;
        var first = await StartWorkerAsync(tenant, "py-killed", ledger, leaseSeconds: 120);

        await WaitUntilAllRunningAsync(tenant, ids, first);
        env.Proxy.Refuse(true);
        env.Proxy.ResetAll();
        try
        {
            await WaitForAsync(() => Task.FromResult(_run.JournalCompletions("py-killed") == ids.Count), first,
                "the outcomes were not journaled", TimeSpan.FromSeconds(60));
            first.Kill(); // SIGKILL: nothing of an orderly shutdown
        }
        finally
        {
            env.Proxy.Refuse(false);
        }
        var firstLog = first.LogTail(200);
        Assert.All(await TasksAsync(tenant, ids), t => Assert.Equal(QueueTaskStatus.Running, t.Status));
        var ranBefore = Ledger.Read(ledger);
        Assert.Equal(ids.Order(), ranBefore.Select(e => e.TaskId).Order());

        var second = await StartWorkerAsync(tenant, "py-killed", ledger, leaseSeconds: 120);
        var tasks = await tenant.WaitUntilFinalAsync(ids, TimeSpan.FromSeconds(60));
        var log = await StopAsync(second);
        await AssertEachCompletedOnceAsync(tenant, tasks, $"{firstLog}\n---\n{log}");
        AssertRanOnceWithTheCompletedToken(ledger, tasks, log);
        Assert.DoesNotContain(Ledger.Read(ledger), e => e.Pid == second.Pid);
        // Replayed at start, before registering (and so before leasing anything).
        var replayed = log.IndexOf("connection syncing → connected", StringComparison.Ordinal);
        var registered = log.IndexOf("registered py-killed", StringComparison.Ordinal);
        Assert.True(replayed >= 0 && registered > replayed, $"the journal was not replayed before registering:\n{log}");
        Assert.Contains("4 replayed", DoneLine(log), StringComparison.Ordinal);
        Assert.Equal(0, _run.JournalCompletions("py-killed"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_black_hole_while_handlers_finish_loses_no_outcome_and_runs_no_task_twice()
    {
        // Connections stay open and bytes go nowhere: calls end by their deadlines, not by a reset.
        var tenant = env.NewTenant();
        var ids = await tenant.EnqueueStepsAsync(count: 3, steps: 4, stepMs: 500);
        var ledger = _run.Ledger;
        var worker = await StartWorkerAsync(tenant, "py-black-hole", ledger, leaseSeconds: 120);

        await WaitUntilAllRunningAsync(tenant, ids, worker);
        env.Proxy.BlackHole(true);
        try
        {
            await WaitForAsync(() => Task.FromResult(worker.LogTail(200).Contains("connection retrying → offline", StringComparison.Ordinal)),
                worker, "the worker did not go offline", TimeSpan.FromSeconds(60));
        }
        finally
        {
            env.Proxy.BlackHole(false);
        }

        var tasks = await tenant.WaitUntilFinalAsync(ids, TimeSpan.FromSeconds(90));
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, tasks, log);
        AssertRanOnceWithTheCompletedToken(ledger, tasks, log);
        Assert.Contains("3 journaled", DoneLine(log), StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Tasks_come_on_the_dispatch_stream_and_everything_about_them_goes_on_it()
    {
        var tenant = env.NewTenant();
        var ids = await tenant.EnqueueStepsAsync(count: 6, steps: 2, stepMs: 200);
        var ledger = _run.Ledger;
        var worker = await StartWorkerAsync(tenant, "py-stream", ledger, leaseSeconds: 30, "--max-tasks", "4", "--once", "6");

        var tasks = await tenant.WaitUntilFinalAsync(ids, TimeSpan.FromSeconds(60));
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, tasks, log);
        AssertRanOnceWithTheCompletedToken(ledger, tasks, log);
        await AssertOnlyTheDispatchStreamWasUsedAsync(env, tenant, tasks, log);
        Assert.Equal(1, env.GatewayCalls(tenant, "QueueService/Dispatch"));
        Assert.Contains("6 completed, 0 failed, 0 released", DoneLine(log), StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task With_long_poll_the_worker_leases_with_LeaseTasks_and_opens_no_stream()
    {
        var tenant = env.NewTenant();
        var ids = await tenant.EnqueueStepsAsync(count: 3, steps: 2, stepMs: 100);
        var ledger = _run.Ledger;
        var worker = await StartWorkerAsync(tenant, "py-long-poll", ledger, leaseSeconds: 30, "--long-poll", "--once", "3");

        var tasks = await tenant.WaitUntilFinalAsync(ids, TimeSpan.FromSeconds(60));
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, tasks, log);
        AssertRanOnceWithTheCompletedToken(ledger, tasks, log);
        Assert.True(env.GatewayCalls(tenant, "QueueService/LeaseTasks") >= 1, log);
        Assert.True(env.GatewayCalls(tenant, "QueueService/CompleteTasks") >= 1, log);
        Assert.Equal(0, env.GatewayCalls(tenant, "QueueService/Dispatch"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_queue_without_the_dispatch_stream_makes_the_worker_fall_back_to_long_polls()
    {
        var tenant = env.NewTenant();
        var ids = await tenant.EnqueueStepsAsync(count: 3, steps: 1, stepMs: 50);
        var ledger = _run.Ledger;
        await EnsureStubsAsync();
        var worker = _run.Start(await env.GatewayWithoutDispatchAsync(), tenant, "py-fallback", "--lease-seconds", "30", "--poll-seconds", "5", "--once", "3");
        _workers.Add(worker);

        var tasks = await tenant.WaitUntilFinalAsync(ids, TimeSpan.FromSeconds(60));
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, tasks, log);
        AssertRanOnceWithTheCompletedToken(ledger, tasks, log);
        Assert.Equal(1, env.GatewayCalls(tenant, "QueueService/Dispatch")); // asked once, never again
        Assert.True(env.GatewayCalls(tenant, "QueueService/LeaseTasks") >= 1, log);
        Assert.Contains("the queue has no dispatch stream (UNIMPLEMENTED", log, StringComparison.Ordinal);
        Assert.DoesNotContain("connection connected → retrying", log, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Connections_cut_again_and_again_while_handlers_run_and_finish_lose_no_outcome_and_run_no_task_twice()
    {
        var tenant = env.NewTenant();
        var ids = await tenant.EnqueueStepsAsync(count: 6, steps: 6, stepMs: 500);
        var ledger = _run.Ledger;
        var worker = await StartWorkerAsync(tenant, "py-cut", ledger, leaseSeconds: 60);

        await WaitUntilAllRunningAsync(tenant, ids, worker);
        // Every connection (the dispatch stream with it) reset every 300 ms for 5 s: while the handlers run (progress and
        // lease extensions in flight) and while they finish (outcomes in flight, some applied but not acknowledged).
        await CutConnectionsAsync(env.Proxy, TimeSpan.FromSeconds(5));
        await tenant.WaitUntilFinalAsync(ids, TimeSpan.FromSeconds(90));
        // One more task afterwards: it comes on a stream opened again (never by a long poll).
        ids = [.. ids, .. await tenant.EnqueueStepsAsync(count: 1, steps: 1, stepMs: 100)];

        var tasks = await tenant.WaitUntilFinalAsync(ids, TimeSpan.FromSeconds(60));
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, tasks, log);
        AssertRanOnceWithTheCompletedToken(ledger, tasks, log);
        Assert.Equal(0, env.GatewayCalls(tenant, "QueueService/LeaseTasks"));
        Assert.True(env.GatewayCalls(tenant, "QueueService/Dispatch") >= 2, $"the stream was not opened again after the cuts\n{log}");
        foreach (var task in tasks)
        {
            Assert.Equal(1, await tenant.EventsAsync(task.Id, "leased"));
        }
        Assert.Contains("7 completed, 0 failed, 0 released", DoneLine(log), StringComparison.Ordinal);
        Assert.Contains("0 refused", DoneLine(log), StringComparison.Ordinal);
    }

    // ------------------------------------------------------------------------------------------------ helpers

    private async Task<BackgroundProcess> StartWorkerAsync(WorkerTenant tenant, string name, string ledger, int leaseSeconds, params string[] extra)
    {
        Assert.Equal(_run.Ledger, ledger);
        await EnsureStubsAsync();
        var worker = _run.Start(env, tenant, name,
            ["--max-tasks", "8", "--lease-seconds", leaseSeconds.ToString(CultureInfo.InvariantCulture), "--poll-seconds", "5", .. extra]);
        _workers.Add(worker);
        return worker;
    }

    /// <summary>SIGTERM, the graceful stop; returns the worker's log once it has exited (and writes it to the test output).</summary>
    private async Task<string> StopAsync(BackgroundProcess worker)
    {
        var log = await WorkerProcesses.StopAsync(worker);
        output.WriteLine($"--- {worker.LogFile}\n{log}");
        return log;
    }

    private static async Task EnsureStubsAsync()
    {
        await StubsOnce.WaitAsync();
        try
        {
            if (_stubsGenerated)
            {
                return;
            }
            var generate = await ProcessRun.RunAsync("/bin/bash", [Path.Combine(PythonDirectory, "generate.sh")], PythonDirectory, TimeSpan.FromSeconds(120));
            Assert.True(generate.ExitCode == 0, generate.ToString());
            _stubsGenerated = true;
        }
        finally
        {
            StubsOnce.Release();
        }
    }

    private static void AssertRanOnceWithTheCompletedToken(string ledger, IReadOnlyList<QueueTask> tasks, string log)
    {
        var entries = Ledger.Read(ledger);
        foreach (var task in tasks)
        {
            var runs = entries.Where(e => e.TaskId == task.Id).ToList();
            Assert.True(runs.Count == 1, $"task {task.Id} ran {runs.Count} times\n{log}");
            Assert.Equal(task.FencingToken, runs[0].FencingToken);
            Assert.Equal(0, runs[0].ResumedFrom);
        }
    }

    private static int CountLines(string log, string taskId, string what) =>
        log.Split('\n').Count(l => l.Contains(taskId, StringComparison.Ordinal) && l.Contains(what, StringComparison.Ordinal));

    public void Dispose()
    {
        foreach (var worker in _workers)
        {
            worker.Dispose();
        }
        _run.Dispose();
    }
}
