extern alias worker;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using worker::Lifeline.Worker;
using Xunit.Abstractions;
using QueueTask = Lifeline.Queue.V1.Task;
using QueueTaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Workers.Tests;

/// <summary>
/// The .NET worker library (in-process <see cref="LifelineWorker"/>s) against a real registry, queue and gateway, with
/// the network between worker and gateway broken by a <see cref="FaultProxy"/>: no outcome is lost, none is applied
/// twice, and the work runs again only when the outage outlived the lease. The handler is <c>demo.steps</c>-like: steps
/// with a progress report after each, then one line in a side-effect ledger (the run happened) before the result.
/// </summary>
public sealed class DotnetWorkerFaultTests(WorkerEnvironment env, ITestOutputHelper output) : IClassFixture<WorkerEnvironment>
{
    private static readonly TimeSpan FinalTimeout = TimeSpan.FromSeconds(120);

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_20_s_outage_shorter_than_the_lease_loses_no_outcome_and_runs_no_task_twice()
    {
        var tenant = env.NewTenant();
        using var scratch = new Scratch();
        // The contract's retry budget (10 s) and a lease that outlives the outage with room to spare.
        await using var worker = await InProcessWorker.StartAsync(env, tenant, scratch, "outage", output, o =>
        {
            o.MaxConcurrentTasks = 8;
            o.LeaseDuration = TimeSpan.FromSeconds(60);
        });
        var ids = await tenant.EnqueueStepsAsync(count: 8, steps: 4, stepMs: 1000);
        await WaitForAsync(async () => (await StatusesAsync(tenant, ids)).All(s => s == QueueTaskStatus.Running), "all 8 tasks running", worker);

        // 20 s of silence: connections stay open, nothing passes. The handlers finish inside it.
        // (Changes before it — a start-up registration that retried on a loaded machine — are not the outage's.)
        Assert.Equal(ConnectionState.Connected, worker.Worker.ConnectionState);
        var changesBefore = worker.Changes.Count;
        var outage = Stopwatch.StartNew();
        env.Proxy.BlackHole(true);
        try
        {
            await WaitForAsync(() => Task.FromResult(worker.Worker.Statistics.Journaled == 8), "all 8 completions journaled", worker, TimeSpan.FromSeconds(19));
            Assert.Equal(ConnectionState.Offline, worker.Worker.ConnectionState);
            Assert.Equal(8, File.ReadAllLines(worker.Worker.JournalPath).Count(l => l.Contains("\"kind\":\"complete\"", StringComparison.Ordinal)));
            Assert.Empty(Completed(await tenant.WaitUntilFinalAsync(ids, TimeSpan.Zero)));
            await Task.Delay(TimeSpan.FromSeconds(20) - outage.Elapsed);
        }
        finally
        {
            env.Proxy.BlackHole(false);
        }

        output.WriteLine($"outage over after {outage.Elapsed.TotalSeconds:0.0} s");
        var tasks = await tenant.WaitUntilFinalAsync(ids, FinalTimeout);
        await WaitForAsync(() => Task.FromResult(worker.Worker.ConnectionState == ConnectionState.Connected), "connected again", worker);
        output.WriteLine($"synced {outage.Elapsed.TotalSeconds:0.0} s after the outage began; {worker.Worker.Statistics}");

        await WorkerProcesses.AssertEachCompletedOnceAsync(tenant, tasks, worker.Worker.Statistics.ToString());
        var ledger = Ledger.Read(scratch.Ledger);
        Assert.Equal(ids.Order(StringComparer.Ordinal), ledger.Select(e => e.TaskId).Order(StringComparer.Ordinal)); // each ran exactly once
        Assert.All(ledger, e => Assert.Equal(tasks.Single(t => t.Id == e.TaskId).FencingToken, e.FencingToken));

        var statistics = worker.Worker.Statistics;
        Assert.Equal((8L, 8L, 8L, 0L), (statistics.Completed, statistics.Journaled, statistics.Replayed, statistics.Refused));
        Assert.False(File.Exists(worker.Worker.JournalPath));
        // The cycle connected → retrying → offline → syncing → connected, one event and one log line per transition.
        Assert.Equal(
            [ConnectionState.Retrying, ConnectionState.Offline, ConnectionState.Syncing, ConnectionState.Connected],
            worker.Changes.Skip(changesBefore).Select(c => c.Current).Take(4));
        Assert.Equal(ConnectionState.Connected, worker.Worker.ConnectionState);
        Assert.Equal(worker.Changes.Count, worker.Logs.Entries.Count(e => e.Message.StartsWith("Connection ", StringComparison.Ordinal) && e.Message.Contains(" → ", StringComparison.Ordinal)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_outage_longer_than_the_lease_has_the_late_outcome_refused_and_the_next_holder_complete_it_once()
    {
        var tenant = env.NewTenant();
        using var scratch = new Scratch();
        await using var cutOff = await InProcessWorker.StartAsync(env, tenant, scratch, "cut-off", output, o =>
        {
            o.MaxConcurrentTasks = 1;
            o.LeaseDuration = TimeSpan.FromSeconds(3);
            o.OfflineAfter = TimeSpan.FromSeconds(2);
        });
        var id = (await tenant.EnqueueStepsAsync(count: 1, steps: 2, stepMs: 400)).Single();
        await WaitForAsync(async () => (await StatusesAsync(tenant, [id]))[0] == QueueTaskStatus.Running, "the task running", cutOff);
        var firstToken = (await tenant.WaitUntilFinalAsync([id], TimeSpan.Zero))[0].FencingToken;

        // Every connection reset, new ones refused: the completion cannot get out, its lease runs out meanwhile.
        env.Proxy.Refuse(true);
        env.Proxy.ResetAll();
        try
        {
            await WaitForAsync(() => Task.FromResult(cutOff.Worker.Statistics.Journaled == 1), "the completion journaled", cutOff);
            // The next holder, connected straight to the gateway, leases the task once its lease has expired and completes it.
            await using var nextHolder = await InProcessWorker.StartAsync(env, tenant, scratch, "next-holder", output, o => o.MaxConcurrentTasks = 1,
                target: env.GatewayGrpc);
            var done = (await tenant.WaitUntilFinalAsync([id], FinalTimeout)).Single();
            Assert.Equal(QueueTaskStatus.Completed, done.Status);
            Assert.True(done.FencingToken > firstToken, $"completed under token {done.FencingToken}, leased first under {firstToken}");
            await WaitForAsync(() => Task.FromResult(nextHolder.Worker.Statistics.Completed == 1), "the next holder's completion counted", nextHolder);
        }
        finally
        {
            env.Proxy.Refuse(false);
        }

        // Back online, the cut-off worker replays its completion: refused as stale, counted, dropped, not retried.
        await WaitForAsync(() => Task.FromResult(cutOff.Worker.Statistics.Refused == 1 && cutOff.Worker.ConnectionState == ConnectionState.Connected),
            "the late completion refused and the worker connected", cutOff);
        var statistics = cutOff.Worker.Statistics;
        Assert.Equal((0L, 1L, 0L, 1L), (statistics.Completed, statistics.Journaled, statistics.Replayed, statistics.Refused));
        Assert.Single(cutOff.Logs.Entries, e => e.Message.Contains("refused for good", StringComparison.Ordinal)
            && e.Message.Contains("STALE_FENCING_TOKEN", StringComparison.Ordinal));
        Assert.False(File.Exists(cutOff.Worker.JournalPath));

        Assert.Equal(1, await tenant.CompletionsAsync(id));
        var final = (await tenant.WaitUntilFinalAsync([id], TimeSpan.Zero)).Single();
        var runs = Ledger.Read(scratch.Ledger).Where(e => e.TaskId == id).ToList();
        // It ran twice — the outage outlived the lease — but only the run under the current token counted.
        Assert.Equal(2, runs.Count);
        Assert.Equal([firstToken, final.FencingToken], runs.Select(r => r.FencingToken).Order());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_worker_stopped_while_offline_leaves_its_journal_and_its_successor_replays_it_without_running_the_tasks_again()
    {
        var tenant = env.NewTenant();
        using var scratch = new Scratch();
        var ids = await tenant.EnqueueStepsAsync(count: 4, steps: 2, stepMs: 500);
        string journalPath;
        var first = await InProcessWorker.StartAsync(env, tenant, scratch, "restarted", output, o =>
        {
            o.MaxConcurrentTasks = 4;
            o.LeaseDuration = TimeSpan.FromSeconds(60);
            o.OfflineAfter = TimeSpan.FromSeconds(2);
        });
        try
        {
            await WaitForAsync(async () => (await StatusesAsync(tenant, ids)).All(s => s == QueueTaskStatus.Running), "all 4 tasks running", first);
            env.Proxy.BlackHole(true);
            await WaitForAsync(() => Task.FromResult(first.Worker.Statistics.Journaled == 4), "all 4 completions journaled", first);
            journalPath = first.Worker.JournalPath;
        }
        finally
        {
            // The worker ends while still cut off: nothing to release or deregister, the journal stays.
            await first.DisposeAsync();
        }

        Assert.Equal(4, File.ReadAllLines(journalPath).Count(l => l.Contains("\"kind\":\"complete\"", StringComparison.Ordinal)));
        Assert.Equal(0, first.Worker.Statistics.Released);
        env.Proxy.BlackHole(false);
        Assert.All(await tenant.WaitUntilFinalAsync(ids, TimeSpan.Zero), t => Assert.Equal(QueueTaskStatus.Running, t.Status));

        // A new worker of the same name and journal directory (a restarted process) replays before it leases anything.
        await using var second = await InProcessWorker.StartAsync(env, tenant, scratch, "restarted", output, o =>
        {
            o.MaxConcurrentTasks = 4;
            o.LeaseDuration = TimeSpan.FromSeconds(60);
        });
        var tasks = await tenant.WaitUntilFinalAsync(ids, FinalTimeout);
        await WaitForAsync(() => Task.FromResult(second.Worker.Statistics.Replayed == 4), "4 completions replayed", second);
        await WorkerProcesses.AssertEachCompletedOnceAsync(tenant, tasks, second.Worker.Statistics.ToString());
        Assert.Equal(ids.Order(StringComparer.Ordinal), Ledger.Read(scratch.Ledger).Select(e => e.TaskId).Order(StringComparer.Ordinal));
        // It started offline (the journal), synced on the first answer, and only then leased.
        Assert.Equal(
            [(ConnectionState.Offline, ConnectionState.Syncing), (ConnectionState.Syncing, ConnectionState.Connected)],
            second.Changes.Take(2).Select(c => (c.Previous, c.Current)));
        Assert.False(File.Exists(journalPath));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Connections_reset_in_the_middle_of_calls_lose_nothing()
    {
        var tenant = env.NewTenant();
        using var scratch = new Scratch();
        var ids = await tenant.EnqueueStepsAsync(count: 40, steps: 3, stepMs: 150);
        // Every chunk is held up a little, so resets catch calls (leases, progress, completions) on the wire.
        env.Proxy.Latency(TimeSpan.FromMilliseconds(30));
        IReadOnlyList<QueueTask> tasks;
        try
        {
            await using var worker = await InProcessWorker.StartAsync(env, tenant, scratch, "reset", output, o =>
            {
                o.MaxConcurrentTasks = 8;
                o.LeaseDuration = TimeSpan.FromSeconds(5);
            });
            var resets = 0;
            var clock = Stopwatch.StartNew();
            // Ten resets while the work goes on. (Not more: a reset that loses a LeaseTasks answer costs that lease, which
            // then expires, and the registry opens the worker's circuit breaker after five such failures in a row.)
            while (Completed(await tenant.WaitUntilFinalAsync(ids, TimeSpan.Zero)).Count < ids.Count && clock.Elapsed < FinalTimeout)
            {
                if (resets < 10)
                {
                    env.Proxy.ResetAll();
                    resets++;
                }

                await Task.Delay(Random.Shared.Next(300, 700));
            }

            tasks = await tenant.WaitUntilFinalAsync(ids, FinalTimeout);
            output.WriteLine($"{resets} resets; {worker.Worker.Statistics}");
            Assert.True(resets >= 5, $"only {resets} resets happened before the work was done");
            Assert.Equal(0, worker.Worker.Statistics.Refused);
        }
        finally
        {
            env.Proxy.Latency(TimeSpan.Zero);
        }

        await WorkerProcesses.AssertEachCompletedOnceAsync(tenant, tasks, "after the resets");
        // A reset never makes work run twice: a lease whose answer was lost is taken again only after it expires, unrun.
        var ledger = Ledger.Read(scratch.Ledger);
        Assert.Equal(ids.Order(StringComparer.Ordinal), ledger.Select(e => e.TaskId).Order(StringComparer.Ordinal));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_handlers_retry_after_reaches_the_queue_as_the_failures_retry_time()
    {
        var tenant = env.NewTenant();
        using var scratch = new Scratch();
        var id = (await tenant.Queue.EnqueueTaskAsync(new Lifeline.Queue.V1.EnqueueTaskRequest
        {
            Task = new Lifeline.Queue.V1.TaskSpec { Type = RateLimitedHandler.Type, Payload = "{}", MaxRetries = 3 },
        })).Task.Id;
        await using var worker = await InProcessWorker.StartAsync(env, tenant, scratch, "retry-after", output, o => o.MaxConcurrentTasks = 1,
            handler: new RateLimitedHandler());
        var failedAt = DateTime.UtcNow;
        await WaitForAsync(() => Task.FromResult(worker.Worker.Statistics.Failed == 1), "the failure accepted", worker);

        var task = (await tenant.WaitUntilFinalAsync([id], TimeSpan.Zero)).Single();
        Assert.Equal(QueueTaskStatus.Pending, task.Status);
        Assert.Equal("HTTP_429", task.Error.Code);
        Assert.Equal(1, task.RetryCount);
        // Not the task's own backoff (1 s) but the handler's 90 s.
        Assert.InRange(task.NotBefore.ToDateTime() - failedAt, TimeSpan.FromSeconds(80), TimeSpan.FromSeconds(100));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_worker_takes_tasks_over_the_dispatch_stream_and_never_long_polls()
    {
        var tenant = env.NewTenant();
        using var scratch = new Scratch();
        await using var worker = await InProcessWorker.StartAsync(env, tenant, scratch, "stream", output, o => o.MaxConcurrentTasks = 3);
        var ids = await tenant.EnqueueStepsAsync(count: 12, steps: 2, stepMs: 50);

        var tasks = await tenant.WaitUntilFinalAsync(ids, FinalTimeout);
        await WorkerProcesses.AssertEachCompletedOnceAsync(tenant, tasks, worker.Worker.Statistics.ToString());
        await WaitForAsync(() => Task.FromResult(worker.Worker.Statistics.Completed == 12), "12 completions accepted", worker);
        Assert.Equal(ids.Order(StringComparer.Ordinal), Ledger.Read(scratch.Ledger).Select(e => e.TaskId).Order(StringComparer.Ordinal));

        // Tasks came over the stream, outcomes and progress went over it: no long poll, no CompleteTasks batch.
        Assert.Equal(0, env.GatewayCalls(tenant, "QueueService/LeaseTasks"));
        Assert.Equal(0, env.GatewayCalls(tenant, "QueueService/CompleteTasks"));
        Assert.True(env.GatewayCalls(tenant, "QueueService/Dispatch") > 0, "no dispatch stream was opened");
        Assert.Equal(0, worker.Worker.Statistics.Refused);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task On_the_dispatch_stream_a_completion_goes_out_at_once_and_on_long_polls_it_waits_for_the_batch_window()
    {
        // A batch window of 2 s: a completion sent over unary CompleteTasks waits for it (others may join), one on the
        // dispatch stream does not (the queue groups what arrives together; waiting would only hold the slot).
        var tenant = env.NewTenant();
        using var scratch = new Scratch();
        async Task<TimeSpan> RunningToCompletedAsync(string name, bool stream)
        {
            await using var worker = await InProcessWorker.StartAsync(env, tenant, scratch, name, output, o =>
            {
                o.MaxConcurrentTasks = 1;
                o.UseDispatchStream = stream;
                o.OutcomeBatchWindow = TimeSpan.FromSeconds(2);
            });
            var ids = await tenant.EnqueueStepsAsync(count: 3, steps: 1, stepMs: 10);
            var tasks = await tenant.WaitUntilFinalAsync(ids, FinalTimeout);
            await WorkerProcesses.AssertEachCompletedOnceAsync(tenant, tasks, worker.Worker.Statistics.ToString());
            return tasks.Max(t => t.CompletedAt.ToDateTime() - t.StartedAt.ToDateTime());
        }

        var onStream = await RunningToCompletedAsync("at-once", stream: true);
        var onPolls = await RunningToCompletedAsync("windowed", stream: false);
        output.WriteLine($"longest start → completion: {onStream.TotalMilliseconds:0} ms on the stream, {onPolls.TotalMilliseconds:0} ms on long polls");
        Assert.True(onStream < TimeSpan.FromSeconds(1), $"a completion on the stream waited {onStream}");
        Assert.True(onPolls >= TimeSpan.FromSeconds(1.9), $"a unary completion did not wait for the window ({onPolls})");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task With_the_dispatch_stream_turned_off_the_worker_long_polls()
    {
        var tenant = env.NewTenant();
        using var scratch = new Scratch();
        await using var worker = await InProcessWorker.StartAsync(env, tenant, scratch, "poll", output, o =>
        {
            o.MaxConcurrentTasks = 3;
            o.UseDispatchStream = false;
        });
        var ids = await tenant.EnqueueStepsAsync(count: 6, steps: 1, stepMs: 10);

        var tasks = await tenant.WaitUntilFinalAsync(ids, FinalTimeout);
        await WorkerProcesses.AssertEachCompletedOnceAsync(tenant, tasks, worker.Worker.Statistics.ToString());
        Assert.True(env.GatewayCalls(tenant, "QueueService/LeaseTasks") > 0, "no LeaseTasks call");
        Assert.Equal(0, env.GatewayCalls(tenant, "QueueService/Dispatch"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_queue_without_the_dispatch_stream_makes_the_worker_fall_back_to_long_polls()
    {
        var tenant = env.NewTenant();
        using var scratch = new Scratch();
        var target = await env.GatewayWithoutDispatchAsync();
        await using var worker = await InProcessWorker.StartAsync(env, tenant, scratch, "fallback", output, o => o.MaxConcurrentTasks = 2, target: target);
        var ids = await tenant.EnqueueStepsAsync(count: 4, steps: 1, stepMs: 10);

        var tasks = await tenant.WaitUntilFinalAsync(ids, FinalTimeout);
        await WorkerProcesses.AssertEachCompletedOnceAsync(tenant, tasks, worker.Worker.Statistics.ToString());
        Assert.True(env.GatewayCalls(tenant, "QueueService/LeaseTasks") > 0, "no LeaseTasks call");
        Assert.Single(worker.Logs.Entries, e => e.Message.StartsWith("The queue does not offer the dispatch stream", StringComparison.Ordinal));
        Assert.Equal(ConnectionState.Connected, worker.Worker.ConnectionState);
    }

    private static List<QueueTask> Completed(IReadOnlyList<QueueTask> tasks) => [.. tasks.Where(t => t.Status == QueueTaskStatus.Completed)];

    private static async Task<IReadOnlyList<QueueTaskStatus>> StatusesAsync(WorkerTenant tenant, IReadOnlyList<string> ids) =>
        [.. (await tenant.WaitUntilFinalAsync(ids, TimeSpan.Zero)).Select(t => t.Status)];

    private async Task WaitForAsync(Func<Task<bool>> condition, string what, InProcessWorker worker, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? FinalTimeout);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                worker.WriteLogs(output);
                Assert.Fail($"Timed out waiting for {what}; {worker.Worker.Statistics}; state {worker.Worker.ConnectionState}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>Fails every task as rate limited, asking for the next attempt in 90 s.</summary>
    private sealed class RateLimitedHandler : ITaskHandler
    {
        public const string Type = "demo.rate-limited";

        public string TaskType => Type;

        public Task<string?> HandleAsync(TaskContext context, CancellationToken cancellationToken) =>
            throw new TaskFailedException("HTTP_429", "the upstream says: too many requests", retryable: true) { RetryAfter = TimeSpan.FromSeconds(90) };
    }

    /// <summary>A temporary directory for a test's journals and ledger.</summary>
    private sealed class Scratch : IDisposable
    {
        public Scratch() => Directory.CreateDirectory(Root);

        public string Root { get; } = Path.Combine(Path.GetTempPath(), "lifeline-dotnet-worker-" + Guid.NewGuid().ToString("N")[..12]);

        public string Journals => Path.Combine(Root, "journal");

        public string Ledger => Path.Combine(Root, "steps.ledger");

        public void Dispose() => Directory.Delete(Root, recursive: true);
    }

    /// <summary>A <see cref="LifelineWorker"/> started in this process with a <c>demo.steps</c>-like handler, its logs and its state changes.</summary>
    private sealed class InProcessWorker : IAsyncDisposable
    {
        private static readonly SemaphoreSlim LedgerLock = new(1, 1);
        private readonly ILoggerFactory _loggers;
        private readonly ITestOutputHelper _output;
        private int _disposed;

        private InProcessWorker(LifelineWorker worker, CapturedLogs logs, ILoggerFactory loggers, ITestOutputHelper output)
        {
            Worker = worker;
            Logs = logs;
            _loggers = loggers;
            _output = output;
            worker.ConnectionStateChanged += (_, e) => Changes.Enqueue(e);
        }

        public LifelineWorker Worker { get; }

        public CapturedLogs Logs { get; }

        public ConcurrentQueue<ConnectionStateChangedEventArgs> Changes { get; } = new();

        public static async Task<InProcessWorker> StartAsync(WorkerEnvironment env, WorkerTenant tenant, Scratch scratch, string name, ITestOutputHelper output,
            Action<LifelineWorkerOptions> configure, Uri? target = null, ITaskHandler? handler = null)
        {
            var options = new LifelineWorkerOptions
            {
                Target = target ?? env.WorkerTarget,
                ApiKey = tenant.WorkerKey,
                Name = $"{tenant.Name}-{name}",
                JournalDirectory = scratch.Journals,
                PollWait = TimeSpan.FromSeconds(2),
                CallTimeout = TimeSpan.FromSeconds(2),
                ShutdownGrace = TimeSpan.FromSeconds(5),
                RegistrationTimeout = TimeSpan.FromSeconds(30),
                StopHostWhenFinished = false,
            };
            configure(options);
            var logs = new CapturedLogs();
            var loggers = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Debug));
            var ledger = scratch.Ledger;
            var worker = new LifelineWorker(Options.Create(options), [handler ?? new StepsHandler(ledger)], loggers.CreateLogger<LifelineWorker>());
            var running = new InProcessWorker(worker, logs, loggers, output);
            await worker.StartAsync(CancellationToken.None);
            return running;
        }

        public void WriteLogs(ITestOutputHelper output)
        {
            foreach (var entry in Logs.Entries)
            {
                output.WriteLine($"[{Worker.WorkerId} {entry.Level}] {entry.Message}{(entry.Exception is null ? "" : " " + entry.Exception.GetType().Name + ": " + entry.Exception.Message)}");
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await Worker.StopAsync(timeout.Token);
            _output.WriteLine($"worker {Worker.WorkerId} stopped: {Worker.Statistics}; states {string.Join(", ", Changes.Select(c => $"{c.Previous}→{c.Current} ({c.Reason})"))}");
            Worker.Dispose();
            _loggers.Dispose();
        }

        /// <summary><c>demo.steps</c> without checkpoints (no checkpoint service here): steps, progress after each, the ledger line, the result.</summary>
        private sealed class StepsHandler(string ledger) : ITaskHandler
        {
            public string TaskType => "demo.steps";

            public async Task<string?> HandleAsync(TaskContext context, CancellationToken cancellationToken)
            {
                var payload = JsonNode.Parse(context.Payload) as JsonObject;
                var steps = payload?["steps"]?.GetValue<int>() ?? 5;
                var stepMs = payload?["step_ms"]?.GetValue<int>() ?? 200;
                for (var step = 0; step < steps; step++)
                {
                    await Task.Delay(stepMs, cancellationToken);
                    await context.ReportProgressAsync(100 * (step + 1) / steps, $"step {step + 1} of {steps}", cancellationToken);
                }

                var line = string.Create(CultureInfo.InvariantCulture, $"{context.TaskId} {context.FencingToken} 0\n");
                await LedgerLock.WaitAsync(cancellationToken);
                try
                {
                    await File.AppendAllTextAsync($"{ledger}.{Environment.ProcessId}", line, cancellationToken);
                }
                finally
                {
                    LedgerLock.Release();
                }

                return new JsonObject { ["steps"] = steps, ["resumed_from"] = 0 }.ToJsonString();
            }
        }
    }
}
