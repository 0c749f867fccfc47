using System.Globalization;
using Lifeline.Queue.V1;
using static Lifeline.Workers.Tests.WorkerProcesses;

namespace Lifeline.Workers.Tests;

/// <summary>
/// The Node worker library (services/workers/node), as its built demo worker process
/// (<c>node dist/examples/demo-worker.js</c>), through the <see cref="FaultProxy"/> in front of the gateway: outages
/// while handlers finish, longer than a lease, and a worker killed while offline. Each test counts side effects in the
/// demo.steps ledger (a task listed twice ran twice) and completions in the queue's history (exactly once). The worker
/// takes its tasks from the queue's dispatch stream unless told <c>--long-poll</c>; the gateway's request log tells which.
/// build/test.sh builds the library first (<c>npm ci &amp;&amp; npm run build</c>).
/// </summary>
public sealed class NodeWorkerFaultTests(WorkerEnvironment env) : IClassFixture<WorkerEnvironment>
{
    private static WorkerRun NewRun(string name)
    {
        var demo = DemoWorkerCommand.Node.Prefix[0];
        Assert.True(File.Exists(demo), $"{demo} is missing: the Node worker is not built. Run `npm ci && npm run build` in services/workers/node (build/test.sh does).");
        return new WorkerRun(DemoWorkerCommand.Node, name);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_20_second_outage_while_handlers_finish_loses_no_outcome_and_runs_no_task_twice()
    {
        var tenant = env.NewTenant();
        using var run = NewRun("outage");
        var ids = await tenant.EnqueueStepsAsync(count: 6, steps: 4, stepMs: 1000);
        // A lease well beyond the outage: the point is the outcomes, not the leases (the next test lets one run out).
        using var worker = run.Start(env, tenant, "node-outage", "--max-tasks", "6", "--lease-seconds", "90");

        await WaitUntilAllRunningAsync(tenant, ids, worker);
        // Handlers finish 1–4 s into the outage; their outcomes are retried for 10 s, journaled, then synced.
        await env.Proxy.OutageAsync(TimeSpan.FromSeconds(20));

        var final = await tenant.WaitUntilFinalAsync(ids, Patience);
        await AssertEachCompletedOnceAsync(tenant, final, worker.LogTail(80));

        var ledger = Ledger.Read(run.Ledger);
        Assert.Equal(ids.Order(), ledger.Select(e => e.TaskId).Order());
        var log = worker.LogTail(400);
        Assert.Contains("connection retrying → offline", log, StringComparison.Ordinal);
        Assert.Contains("journaled completion delivered", log, StringComparison.Ordinal);
        Assert.Contains("connection syncing → connected", log, StringComparison.Ordinal);
        await WaitForAsync("the journal emptied", worker, () => Task.FromResult(run.JournalLines("node-outage") == 0));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_outage_longer_than_the_lease_gets_the_late_outcome_refused_as_stale_and_the_next_holder_completes_it_once()
    {
        var tenant = env.NewTenant();
        using var run = NewRun("stale");
        var ids = await tenant.EnqueueStepsAsync(count: 1, steps: 2, stepMs: 500);
        var id = ids[0];
        using var late = run.Start(env, tenant, "node-late", "--lease-seconds", "4");
        await WaitForAsync("the task running", late, async () => (await TasksAsync(tenant, ids))[0].Status == Queue.V1.TaskStatus.Running);
        var firstToken = (await TasksAsync(tenant, ids))[0].FencingToken;

        env.Proxy.Refuse(true);
        env.Proxy.ResetAll();
        try
        {
            // The late worker finishes (ledger), cannot report, and its lease runs out; the queue gives the task back and
            // a second worker — not behind the proxy — takes it with a larger token and completes it.
            await WaitForAsync("the late worker's run", late, () => Task.FromResult(Ledger.Read(run.Ledger).Count == 1));
            using var next = run.Start(env.GatewayGrpc, tenant, "node-next");
            var final = await tenant.WaitUntilFinalAsync(ids, Patience);
            Assert.True(final[0].Status == Queue.V1.TaskStatus.Completed, Describe(final, late, next));
            Assert.True(final[0].FencingToken > firstToken);
            await WaitForAsync("the late outcome journaled", late, () => Task.FromResult(late.LogTail(400).Contains("journaled (seq", StringComparison.Ordinal)));
        }
        finally
        {
            env.Proxy.Refuse(false);
        }

        // Back online: the journaled completion is refused as stale, logged once, and dropped from the journal.
        await WaitForAsync("the stale refusal", late, () =>
            Task.FromResult(late.LogTail(400).Contains("STALE_FENCING_TOKEN", StringComparison.Ordinal) && run.JournalLines("node-late") == 0));
        var log = late.LogTail(400);
        Assert.Equal(1, log.Split('\n').Count(l => l.Contains($"task {id}: completion", StringComparison.Ordinal) && l.Contains("refused", StringComparison.Ordinal)));
        Assert.Equal(1, await tenant.CompletionsAsync(id));
        var ledger = Ledger.Read(run.Ledger).Where(e => e.TaskId == id).OrderBy(e => e.FencingToken).ToList();
        Assert.Equal(2, ledger.Count); // the late run and the next holder's run, each with its own lease
        Assert.Equal(firstToken, ledger[0].FencingToken);
        Assert.Equal((await TasksAsync(tenant, ids))[0].FencingToken, ledger[1].FencingToken);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_killed_while_offline_replays_its_journal_on_restart_and_no_task_runs_again()
    {
        var tenant = env.NewTenant();
        using var run = NewRun("restart");
        var ids = await tenant.EnqueueStepsAsync(count: 4, steps: 3, stepMs: 500);
        var first = run.Start(env, tenant, "node-restart", "--max-tasks", "4", "--lease-seconds", "90");
        try
        {
            await WaitUntilAllRunningAsync(tenant, ids, first);
            env.Proxy.Refuse(true);
            env.Proxy.ResetAll();
            try
            {
                await WaitForAsync("four outcomes journaled", first, () => Task.FromResult(run.JournalCompletions("node-restart") == 4));
                first.Kill(); // SIGKILL while offline: nothing but the journal survives
            }
            finally
            {
                env.Proxy.Refuse(false);
            }
        }
        finally
        {
            first.Dispose();
        }

        Assert.Equal(4, Ledger.Read(run.Ledger).Count);
        Assert.True((await TasksAsync(tenant, ids)).All(t => t.Status == Queue.V1.TaskStatus.Running), "nothing reached the queue before the kill");

        using var second = run.Start(env, tenant, "node-restart", "--max-tasks", "4", "--lease-seconds", "90");
        var final = await tenant.WaitUntilFinalAsync(ids, Patience);
        await AssertEachCompletedOnceAsync(tenant, final, second.LogTail(80));

        Assert.Equal(ids.Order(), Ledger.Read(run.Ledger).Select(e => e.TaskId).Order()); // no task ran again
        var log = second.LogTail(400);
        Assert.Matches(@"journal \S+ holds \d+ entries from an earlier run", log); // the 4 completions and the tasks' last progress
        Assert.Equal(4, log.Split('\n').Count(l => l.Contains("journaled completion delivered", StringComparison.Ordinal)));
        Assert.True(log.IndexOf("journaled completion delivered", StringComparison.Ordinal) < log.IndexOf("registered node-restart", StringComparison.Ordinal),
            "the journal is replayed before the worker registers and leases");
        Assert.Equal(0, run.JournalLines("node-restart"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Tasks_come_on_the_dispatch_stream_and_everything_about_them_goes_on_it()
    {
        var tenant = env.NewTenant();
        using var run = NewRun("stream");
        var ids = await tenant.EnqueueStepsAsync(count: 6, steps: 2, stepMs: 200);
        using var worker = run.Start(env, tenant, "node-stream", "--max-tasks", "4", "--once", "6");

        var final = await tenant.WaitUntilFinalAsync(ids, Patience);
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, final, log);
        Assert.Equal(ids.Order(), Ledger.Read(run.Ledger).Select(e => e.TaskId).Order());
        await AssertOnlyTheDispatchStreamWasUsedAsync(env, tenant, final, log);
        Assert.Equal(1, env.GatewayCalls(tenant, "QueueService/Dispatch"));
        Assert.Contains("done: 6 completed, 0 failed, 0 refused", log, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task With_long_poll_the_worker_leases_with_LeaseTasks_and_opens_no_stream()
    {
        var tenant = env.NewTenant();
        using var run = NewRun("long-poll");
        var ids = await tenant.EnqueueStepsAsync(count: 3, steps: 2, stepMs: 100);
        using var worker = run.Start(env, tenant, "node-long-poll", "--long-poll", "--once", "3");

        var final = await tenant.WaitUntilFinalAsync(ids, Patience);
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, final, log);
        Assert.Equal(ids.Order(), Ledger.Read(run.Ledger).Select(e => e.TaskId).Order());
        Assert.True(env.GatewayCalls(tenant, "QueueService/LeaseTasks") >= 1, log);
        Assert.True(env.GatewayCalls(tenant, "QueueService/CompleteTasks") >= 1, log);
        Assert.Equal(0, env.GatewayCalls(tenant, "QueueService/Dispatch"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_queue_without_the_dispatch_stream_makes_the_worker_fall_back_to_long_polls()
    {
        var tenant = env.NewTenant();
        using var run = NewRun("fallback");
        var ids = await tenant.EnqueueStepsAsync(count: 3, steps: 1, stepMs: 50);
        using var worker = run.Start(await env.GatewayWithoutDispatchAsync(), tenant, "node-fallback", "--once", "3");

        var final = await tenant.WaitUntilFinalAsync(ids, Patience);
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, final, log);
        Assert.Equal(ids.Order(), Ledger.Read(run.Ledger).Select(e => e.TaskId).Order());
        Assert.Equal(1, env.GatewayCalls(tenant, "QueueService/Dispatch")); // asked once, never again
        Assert.True(env.GatewayCalls(tenant, "QueueService/LeaseTasks") >= 1, log);
        Assert.Contains("the queue has no dispatch stream (UNIMPLEMENTED", log, StringComparison.Ordinal);
        Assert.DoesNotContain("connection connected → retrying", log, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Connections_cut_again_and_again_while_handlers_run_and_finish_lose_no_outcome_and_run_no_task_twice()
    {
        var tenant = env.NewTenant();
        using var run = NewRun("cut");
        var ids = await tenant.EnqueueStepsAsync(count: 6, steps: 2, stepMs: 400);
        using var worker = run.Start(env, tenant, "node-cut", "--max-tasks", "8", "--lease-seconds", "60");

        await WaitUntilAllRunningAsync(tenant, ids, worker);
        // Every connection (the dispatch stream with it) reset every 300 ms for 5 s: while the handlers run (progress and
        // lease extensions in flight) and while they finish (outcomes in flight, some applied but not acknowledged).
        await CutConnectionsAsync(env.Proxy, TimeSpan.FromSeconds(5));
        await tenant.WaitUntilFinalAsync(ids, Patience);
        // One more task afterwards: it comes on a stream opened again (never by a long poll).
        ids = [.. ids, .. await tenant.EnqueueStepsAsync(count: 1, steps: 1, stepMs: 100)];

        var final = await tenant.WaitUntilFinalAsync(ids, Patience);
        var log = await StopAsync(worker);
        await AssertEachCompletedOnceAsync(tenant, final, log);
        var ledger = Ledger.Read(run.Ledger);
        Assert.Equal(ids.Order(), ledger.Select(e => e.TaskId).Order()); // each ran once
        Assert.All(final, t => Assert.Equal(t.FencingToken, ledger.Single(e => e.TaskId == t.Id).FencingToken));
        Assert.Equal(0, env.GatewayCalls(tenant, "QueueService/LeaseTasks"));
        Assert.True(env.GatewayCalls(tenant, "QueueService/Dispatch") >= 2, $"the stream was not opened again after the cuts\n{log}");
        foreach (var task in final)
        {
            Assert.Equal(1, await tenant.EventsAsync(task.Id, "leased"));
        }
        Assert.Contains("done: 7 completed, 0 failed, 0 refused", log, StringComparison.Ordinal);
    }
}
