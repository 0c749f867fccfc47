using System.Diagnostics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Grpc.Net.Client;
using Lifeline.EndToEnd.Tests.Suite;
using Lifeline.Testing;
using Lifeline.Processes;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Xunit.Abstractions;

namespace Lifeline.EndToEnd.Tests;

/// <summary>
/// Crash recovery on real processes: worker processes (the .NET demo worker running <c>demo.steps</c>, which
/// checkpoints after each step and resumes from a recovery's checkpoint) process 1,000 tasks through the gateway
/// of the apphost-started suite; a third of them and the recovery leader are killed with SIGKILL mid-run; a
/// standby recovery instance (the test's own, or the one the apphost restarts) takes over and finishes. Suite defaults: heartbeat 5 s (TTL 15 s), recovery scan 5 s, leader lease 5 s.
/// </summary>
[Collection(SuiteCollection.Name)]
public sealed class ChaosTests(SuiteFixture suite, ITestOutputHelper output)
{
    private const string TaskType = "demo.steps";
    private const int TaskCount = 1000;
    private const int WorkerCount = 6;
    private const int KilledCount = WorkerCount / 3;
    private static readonly TimeSpan HeartbeatTtl = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan ScanInterval = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan LeaderLease = TimeSpan.FromSeconds(5);

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_third_of_the_workers_and_the_recovery_leader_killed_lose_no_task_and_complete_none_twice()
    {
        var run = Guid.NewGuid().ToString("N")[..8];
        var ledger = Path.Combine(suite.WorkDirectory, $"chaos-{run}.ledger");
        var queue = suite.Queue(Keys.DefaultWorker);

        // 1,000 tasks, each its own workflow: 5 steps of 150–350 ms with a checkpoint after each.
        var taskIds = new HashSet<string>();
        for (var batch = 0; batch < TaskCount / 100; batch++)
        {
            var request = new EnqueueTasksRequest();
            for (var i = 0; i < 100; i++)
            {
                request.Tasks.Add(new BatchTask
                {
                    Task = new TaskSpec
                    {
                        // Step lengths differ between tasks so a worker's four slots drift apart: at the kill, its tasks are
                        // at different steps (with equal lengths they move in lockstep and may all be before their first checkpoint).
                        Type = TaskType, Payload = $$"""{"steps":5,"step_ms":{{150 + (i % 5) * 50}}}""", WorkflowId = $"chaos-{run}-{batch * 100 + i}", MaxRetries = 20,
                    },
                });
            }
            taskIds.UnionWith((await queue.EnqueueTasksAsync(request)).Tasks.Select(t => t.Id));
        }
        Assert.Equal(TaskCount, taskIds.Count);

        // A standby recovery instance beside the apphost's (which started first and leads): same configuration, own port.
        var leaderPid = suite.ResourcePid("recovery") ?? throw new InvalidOperationException("no live recovery pid");
        var standbyPort = FreeTcpPort();
        var environment = ProcessEnvironment(leaderPid);
        environment["ASPNETCORE_URLS"] = $"http://127.0.0.1:{standbyPort}";
        environment["Recovery__InstanceId"] = $"chaos-standby-{run}";
        environment.Remove("Telemetry__PrometheusPort"); // the leader's Prometheus port is its own
        var recoveryDll = suite.BuiltAssembly("services/Lifeline.Recovery", "Lifeline.Recovery");
        // Run from its build folder: that is where its appsettings.json (h2c-only Kestrel) is copied.
        using var standby = BackgroundProcess.Start(SuiteFixture.DotnetHost(), [recoveryDll],
            Path.GetDirectoryName(recoveryDll)!, Path.Combine(suite.WorkDirectory, $"chaos-{run}-standby.log"), environment, clearEnvironment: true);
        using var standbyChannel = GrpcChannel.ForAddress($"http://127.0.0.1:{standbyPort}");
        var standbyRecovery = new RecoveryService.RecoveryServiceClient(standbyChannel.WithDeadlines().As(suite.Identity, null));
        var before = await EventuallyAsync(async () =>
        {
            var l = await standbyRecovery.GetLeadershipAsync(new GetLeadershipRequest());
            return l.LeaderInstance.Length > 0 ? l : null;
        }, TimeSpan.FromSeconds(60), () => "the standby to answer\n" + standby.LogTail());
        Assert.False(before.IsLeader, "the standby should not lead while the apphost's recovery does");

        // Six worker processes, four tasks at a time each.
        var workers = Enumerable.Range(0, WorkerCount).Select(i => BackgroundProcess.Start(SuiteFixture.DotnetHost(),
            [
                suite.BuiltAssembly("services/workers/dotnet/Lifeline.DemoWorker", "Lifeline.DemoWorker"),
                "--credentials", suite.CredentialsFile, "--key-name", Keys.DefaultWorker, "--types", TaskType, "--max-tasks", "4",
                "--ledger", ledger, "--name", $"chaos-{run}-{i}",
            ],
            suite.RepositoryRoot, Path.Combine(suite.WorkDirectory, $"chaos-{run}-worker-{i}.log"))).ToList();
        try
        {
            await EventuallyAsync(async () => await CompletedAsync() >= 150 ? "" : null, TimeSpan.FromSeconds(120),
                () => "150 tasks to complete\n" + workers[0].LogTail());

            // SIGKILL a third of the workers mid-task, then the recovery leader.
            var killedIds = await WorkerIdsAsync(Enumerable.Range(0, KilledCount).Select(i => $"chaos-{run}-{i}"));
            var killedAt = Stopwatch.StartNew();
            var killedAtUtc = DateTime.UtcNow;
            foreach (var worker in workers.Take(KilledCount))
            {
                Assert.True(UnixProcess.Signal(worker.Pid, UnixProcess.SigKill));
            }
            Assert.True(UnixProcess.Signal(leaderPid, UnixProcess.SigKill));
            // A standby takes over within one lease: ours, or the instance the apphost restarts in place of the killed one
            // (it races ours for the lease; either way another instance leads under a newer token).
            var after = await EventuallyAsync(async () =>
            {
                var l = await standbyRecovery.GetLeadershipAsync(new GetLeadershipRequest());
                return l.LeaderInstance.Length > 0 && l.LeaderInstance != before.LeaderInstance && l.FencingToken > before.FencingToken ? l : null;
            }, LeaderLease + TimeSpan.FromSeconds(5), () => "a standby to take over\n" + standby.LogTail());
            output.WriteLine($"{(after.IsLeader ? "the test's standby" : $"the restarted instance {after.LeaderInstance}")} leads " +
                $"{killedAt.Elapsed.TotalSeconds:0.0} s after the kill with token {after.FencingToken} (was {before.FencingToken})");

            await EventuallyAsync(async () => await CompletedAsync() == TaskCount ? "" : null, TimeSpan.FromSeconds(300),
                () => $"all {TaskCount} tasks to complete (now {CompletedAsync().GetAwaiter().GetResult()})\n{standby.LogTail()}");

            // Every task completed exactly once: one side effect carrying the fencing token the queue accepted.
            var accepted = await CompletedTokensAsync();
            Assert.Equal(taskIds.OrderBy(x => x), accepted.Keys.OrderBy(x => x));
            // One ledger file per worker process; a line cut short by a SIGKILL is not a side effect.
            var effects = Directory.GetFiles(suite.WorkDirectory, Path.GetFileName(ledger) + ".*")
                .SelectMany(File.ReadAllLines)
                .Select(line => line.Split(' '))
                .Where(f => f.Length == 3 && long.TryParse(f[1], CultureInfo.InvariantCulture, out _) && int.TryParse(f[2], CultureInfo.InvariantCulture, out _))
                .Select(f => (Task: f[0], Token: long.Parse(f[1], CultureInfo.InvariantCulture), ResumedFrom: int.Parse(f[2], CultureInfo.InvariantCulture)))
                .ToList();
            var wrong = accepted.Where(a => effects.Count(e => e.Task == a.Key && e.Token == a.Value) != 1)
                .Select(a => $"task {a.Key} accepted token {a.Value}: effects [{string.Join(", ", effects.Where(e => e.Task == a.Key).Select(e => $"token {e.Token} from step {e.ResumedFrom}"))}]")
                .ToList();
            Assert.True(wrong.Count == 0, $"{wrong.Count} task(s) without exactly one side effect of their accepted run:\n{string.Join("\n", wrong.Take(20))}");
            var strays = effects.Count(e => accepted[e.Task] != e.Token);
            output.WriteLine($"{effects.Count} side effects for {TaskCount} tasks; {strays} from attempts whose worker died before completing");

            // The killed workers' tasks were taken back (and only theirs: no live worker lost a task), re-leased within TTL + one scan.
            var actions = new List<Recovery.V1.RecoveryAction>();
            foreach (var workerId in killedIds)
            {
                actions.AddRange((await standbyRecovery.ListRecoveryActionsAsync(new ListRecoveryActionsRequest { WorkerId = workerId, PageSize = 1000 })).Actions);
            }
            var all = (await standbyRecovery.ListRecoveryActionsAsync(new ListRecoveryActionsRequest { Since = Timestamp.FromDateTime(killedAtUtc.AddMinutes(-5)), PageSize = 1000 }))
                .Actions.Where(a => taskIds.Contains(a.TaskId)).ToList();
            Assert.NotEmpty(actions);
            Assert.All(all, a => Assert.Contains(a.WorkerId, killedIds));
            var bound = HeartbeatTtl + ScanInterval;
            var relasedAfter = new List<TimeSpan>();
            foreach (var action in actions.Where(a => a.Succeeded))
            {
                var history = (await queue.GetTaskHistoryAsync(new GetTaskHistoryRequest { TaskId = action.TaskId })).Events;
                var recovered = history.Single(e => e.EventType == "recovered" && e.FencingToken == action.FencingToken);
                var released = history.Where(e => e.EventType == "leased" && e.OccurredAt.ToDateTime() >= recovered.OccurredAt.ToDateTime()).MinBy(e => e.OccurredAt.ToDateTime());
                Assert.NotNull(released);
                relasedAfter.Add(released!.OccurredAt.ToDateTime() - killedAtUtc);
            }
            output.WriteLine($"{actions.Count} tasks of killed workers recovered; re-leased {relasedAfter.Min().TotalSeconds:0.0}–{relasedAfter.Max().TotalSeconds:0.0} s after the kill (bound {bound.TotalSeconds:0} s)");
            Assert.All(relasedAfter, t => Assert.True(t <= bound + TimeSpan.FromSeconds(2), $"re-leased {t.TotalSeconds:0.0} s after the kill"));

            // Those with a checkpoint resumed from it: the accepted run started after the saved step.
            var resumed = actions.Where(a => a.Action == ActionType.Resume).ToList();
            Assert.True(resumed.Count > 0, "no recovered task resumed from a checkpoint:\n" +
                string.Join("\n", actions.Select(a => $"{a.TaskId} {a.Action} {a.Trigger} checkpoint '{a.CheckpointId}': {a.Reason}")));
            Assert.All(resumed, a => Assert.True(effects.Single(e => e.Task == a.TaskId && e.Token == accepted[a.TaskId]).ResumedFrom >= 1,
                $"task {a.TaskId} was requeued with checkpoint {a.CheckpointId} but did not resume from it"));
        }
        finally
        {
            foreach (var worker in workers)
            {
                UnixProcess.Signal(worker.Pid, UnixProcess.SigTerm);
            }
            foreach (var worker in workers)
            {
                if (!await UnixProcess.WaitForExitAsync(worker.Pid, TimeSpan.FromSeconds(30)))
                {
                    worker.Kill();
                }
                worker.Dispose();
            }
            await suite.WaitUntilHealthyAsync(TimeSpan.FromSeconds(120)); // the apphost restarts the killed recovery instance
        }
    }

    private async Task<long> CompletedAsync()
    {
        var stats = await suite.Queue(Keys.DefaultReader).GetQueueStatsAsync(new GetQueueStatsRequest { Type = TaskType });
        return stats.Totals.GetValueOrDefault("TASK_STATUS_COMPLETED");
    }

    private async Task<Dictionary<string, long>> CompletedTokensAsync()
    {
        var tokens = new Dictionary<string, long>();
        var page = "";
        do
        {
            var response = await suite.Queue(Keys.DefaultReader).ListTasksAsync(new ListTasksRequest
            {
                Type = TaskType, Status = Queue.V1.TaskStatus.Completed, PageSize = 1000, PageToken = page,
            });
            foreach (var task in response.Tasks)
            {
                tokens[task.Id] = task.FencingToken;
            }
            page = response.NextPageToken;
        }
        while (page.Length > 0);
        return tokens;
    }

    private async Task<List<string>> WorkerIdsAsync(IEnumerable<string> names)
    {
        var wanted = names.ToHashSet();
        var ids = new List<string>();
        var page = "";
        do
        {
            var response = await suite.Registry(Keys.DefaultReader).ListWorkersAsync(new ListWorkersRequest { PageSize = 1000, PageToken = page });
            ids.AddRange(response.Workers.Where(w => wanted.Contains(w.Name)).Select(w => w.Id));
            page = response.NextPageToken;
        }
        while (page.Length > 0);
        Assert.Equal(wanted.Count, ids.Count);
        return ids;
    }

    /// <summary>The environment of a running process (to start a standby configured exactly like it).</summary>
    private static Dictionary<string, string?> ProcessEnvironment(int pid) =>
        File.ReadAllText($"/proc/{pid}/environ").Split('\0', StringSplitOptions.RemoveEmptyEntries)
            .Select(entry => entry.Split('=', 2))
            .Where(kv => kv.Length == 2)
            .ToDictionary(kv => kv[0], kv => (string?)kv[1]);

    private static int FreeTcpPort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task<T> EventuallyAsync<T>(Func<Task<T?>> probe, TimeSpan timeout, Func<string> what) where T : class
    {
        var deadline = Stopwatch.StartNew();
        Exception? last = null;
        while (deadline.Elapsed < timeout)
        {
            try
            {
                if (await probe() is { } value)
                {
                    return value;
                }
            }
            catch (Grpc.Core.RpcException e)
            {
                last = e;
            }
            await Task.Delay(250);
        }
        throw new TimeoutException($"timed out after {timeout.TotalSeconds:0} s waiting for {what()} (last error: {last?.Message})");
    }
}
