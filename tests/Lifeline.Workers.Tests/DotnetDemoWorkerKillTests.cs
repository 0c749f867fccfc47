using Xunit.Abstractions;
using static Lifeline.Workers.Tests.WorkerProcesses;
using QueueTaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Workers.Tests;

/// <summary>
/// The .NET library as a real process (the demo worker, <c>demo.steps</c> with its checkpoints), SIGKILLed while
/// offline: nothing of an orderly shutdown runs, only the fsynced journal survives. The restarted process replays it
/// before it leases, and no task runs again — the same test the Python and Node libraries pass.
/// </summary>
public sealed class DotnetDemoWorkerKillTests(WorkerEnvironment env, ITestOutputHelper output) : IClassFixture<WorkerEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_killed_while_offline_replays_its_journal_on_restart_and_no_task_runs_again()
    {
        var tenant = env.NewTenant();
        using var run = new WorkerRun(DemoWorkerCommand.Dotnet, "dotnet-kill");
        var ids = await tenant.EnqueueStepsAsync(count: 4, steps: 3, stepMs: 500);
        var first = run.Start(env, tenant, "dotnet-killed", "--max-tasks", "4", "--lease-seconds", "90");
        try
        {
            await WaitUntilAllRunningAsync(tenant, ids, first);
            env.Proxy.Refuse(true);
            env.Proxy.ResetAll();
            try
            {
                await WaitForAsync("four outcomes journaled", first, () => Task.FromResult(run.JournalCompletions("dotnet-killed") == 4));
                first.Kill(); // SIGKILL while offline
            }
            finally
            {
                env.Proxy.Refuse(false);
            }
        }
        finally
        {
            output.WriteLine($"--- first worker\n{first.LogTail(200)}");
            first.Dispose();
        }

        Assert.Equal(ids.Order(), Ledger.Read(run.Ledger).Select(e => e.TaskId).Order());
        Assert.True((await TasksAsync(tenant, ids)).All(t => t.Status == QueueTaskStatus.Running), "nothing reached the queue before the kill");

        using var second = run.Start(env, tenant, "dotnet-killed", "--max-tasks", "4", "--lease-seconds", "90");
        var final = await tenant.WaitUntilFinalAsync(ids, Patience);
        var log = await StopAsync(second);
        output.WriteLine($"--- second worker\n{log}");
        await AssertEachCompletedOnceAsync(tenant, final, log);

        // No task ran again: the ledger still holds the first process's four runs, with the tokens that completed.
        var entries = Ledger.Read(run.Ledger);
        Assert.Equal(ids.Order(), entries.Select(e => e.TaskId).Order());
        Assert.All(final, t => Assert.Equal(t.FencingToken, entries.Single(e => e.TaskId == t.Id).FencingToken));
        Assert.Contains("replaying them before leasing", log, StringComparison.Ordinal);
        Assert.Contains("4 replayed", DoneLine(log), StringComparison.Ordinal);
        Assert.Equal(0, run.JournalCompletions("dotnet-killed"));
    }
}
