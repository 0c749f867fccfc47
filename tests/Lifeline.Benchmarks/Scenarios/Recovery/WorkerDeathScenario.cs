using System.Collections.Concurrent;
using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using Lifeline.Benchmarks.Scenarios.Registry;
using Lifeline.Queue.V1;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Task = System.Threading.Tasks.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.Recovery;

/// <summary>
/// Time from worker death to re-lease. Workers register, keep beating, and each leases and starts its share of
/// tasks with a lease far longer than the measurement; then all stop beating at once (T0, as if SIGKILLed). The
/// registry declares them lost once their heartbeat TTL runs out; recovery requeues their tasks (on the lost
/// event, or at its next scan); a live rescuer worker, long-polling LeaseTasks the whole time, records when each
/// task comes back to it. Afterwards: every task re-leased exactly once, with a newer fencing token, the dead
/// workers' late completions refused, one recovery action per task (ListRecoveryActions), and the rescuer's
/// completions accepted.
/// </summary>
internal static class WorkerDeathScenario
{
    /// <summary>Each run its own task type, so its checks never count another run's tasks.</summary>
    public static string TaskTypeOf(string run) => $"bench.recovery.{run}";

    /// <summary>How long the rescuer keeps polling after the last task came back: a second re-lease of any task would show.</summary>
    private static readonly TimeSpan DuplicateWait = RecoveryProfile.ScanInterval * 3;

    private static readonly TimeSpan RescuerWait = TimeSpan.FromSeconds(1);
    private const int RescuerBatch = 100;

    public static async Task<WorkerDeathResult> RunAsync(
        RecoveryContext context, RecoveryConnection recovery, string name, int deadWorkers, CancellationToken ct)
    {
        var profile = context.Profile;
        var taskType = TaskTypeOf(name);
        var errors = new CallErrors();
        var total = deadWorkers * profile.TasksPerDeadWorker;
        var scenarioStart = DateTime.UtcNow;
        await using var dead = new WorkerFleet(context.Registry, deadWorkers, $"{name}-dead");
        await using var rescuerFleet = new WorkerFleet(context.Registry, 1, $"{name}-rescuer");
        WorkerDeathResult Failed(string why) => Result(context, name, deadWorkers, total, null, null, null, 0, 0, total, 0, 0, 0, 0, new Dictionary<string, int>(), total, 0, 0, 0,
            "-", errors, $"MISMATCH: {why}");

        if (!await context.RegisterAsync(dead, taskType, errors, ct) || !await context.RegisterAsync(rescuerFleet, taskType, errors, ct))
        {
            return Failed("not every worker registered");
        }

        var producer = new TaskProducer(context.Queue, taskType, total, batchSize: Math.Min(total, profile.EnqueueBatchSize), errors);
        await producer.RunAsync(callers: 1, ct);
        if (producer.Created != total)
        {
            return Failed($"{producer.Created} of {total} tasks enqueued");
        }

        // Each doomed worker leases and starts its share (one at a time, so every worker gets exactly its share).
        var holder = new Dictionary<string, (FleetWorker Worker, long Token)>(total);
        foreach (var worker in dead.Workers)
        {
            foreach (var task in await context.LeaseAsync(worker, taskType, profile.TasksPerDeadWorker, profile.DeadWorkerLease, errors, ct))
            {
                holder[task.Id] = (worker, task.FencingToken);
            }
        }

        if (holder.Count != total)
        {
            return Failed($"the workers leased {holder.Count} of {total} tasks");
        }

        var rescuer = new Rescuer(context.Queue, rescuerFleet.Workers[0].Id, taskType, profile.DeadWorkerLease, errors);
        var rescuing = Task.Run(() => rescuer.RunAsync(ct), CancellationToken.None);

        // T0: the doomed workers stop beating (a beat already on the wire still lands; it was sent before T0).
        dead.Pause();
        var t0 = Stopwatch.GetTimestamp();
        var deadline = context.HeartbeatTtl + profile.ReleaseTimeout;
        while (rescuer.Count < total && Stopwatch.GetElapsedTime(t0) < deadline)
        {
            context.EnsureServicesRunning();
            await Task.Delay(10, ct);
        }

        await Task.Delay(DuplicateWait, ct);
        rescuer.Stop();
        await rescuing;

        // Re-leases: exactly one per task, each with a newer token than the dead worker's.
        var leases = rescuer.Leases;
        var byTask = leases.GroupBy(l => l.TaskId).ToDictionary(g => g.Key, g => g.OrderBy(l => l.At).ToList());
        var unexpected = byTask.Keys.Count(id => !holder.ContainsKey(id));
        var duplicates = byTask.Where(g => holder.ContainsKey(g.Key)).Sum(g => g.Value.Count - 1);
        var missing = holder.Keys.Count(id => !byTask.ContainsKey(id));
        var firsts = byTask.Where(g => holder.ContainsKey(g.Key)).Select(g => g.Value[0]).ToList();
        var notNewer = firsts.Count(l => l.Token <= holder[l.TaskId].Token);
        var releasedOnce = byTask.Count(g => holder.ContainsKey(g.Key) && g.Value.Count == 1 && g.Value[0].Token > holder[g.Key].Token);
        var sinceDeath = DelayDistribution.Of(firsts.Select(l => Seconds(t0, l.At)));
        var sinceLastBeat = DelayDistribution.Of(firsts.Select(l => Seconds(holder[l.TaskId].Worker.LastBeat, l.At)));

        // The dead workers wake up and complete with their old tokens: every completion must be refused.
        var zombieRefused = await CompleteAsync(context, holder.Select(h => (h.Key, h.Value.Token)), "CompleteTasks (dead workers)", errors, ct) is { } zombie
            ? zombie.Results.Count(r => !r.Accepted)
            : 0;

        // What recovery recorded: one successful action per task, by trigger.
        var actions = await ListActionsAsync(recovery, scenarioStart.AddSeconds(-1), errors, ct);
        var mine = actions.Where(a => a.Succeeded && holder.ContainsKey(a.TaskId)).ToList();
        var perTask = mine.GroupBy(a => a.TaskId).ToDictionary(g => g.Key, g => g.Count());
        var byTrigger = mine.GroupBy(a => TriggerName(a.Trigger)).OrderBy(g => g.Key).ToDictionary(g => g.Key, g => g.Count());
        var byLost = mine.Count(a => a.Trigger == RecoveryTrigger.WorkerLost);
        var serviceTimes = DelayDistribution.Of(mine.Where(a => a.TimeToRecovery is not null).Select(a => a.TimeToRecovery.ToTimeSpan().TotalSeconds));

        // The rescuer finishes the work: its completions (newest tokens) are accepted, and the queue's counts agree.
        var rescuerAccepted = await CompleteAsync(context, firsts.Select(l => (l.TaskId, l.Token)), "CompleteTasks (rescuer)", errors, ct) is { } done
            ? done.AcceptedCount
            : 0;
        var (storedOk, stored) = await context.CheckStoredAsync(taskType, TaskStatus.Completed, total, ct);

        // The rescuer leaves cleanly: deregistered, it is never announced lost (which would send recovery looking for its tasks later).
        rescuerFleet.Pause();
        try
        {
            await context.Registry.Registry.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = rescuerFleet.Workers[0].Id }, RegistryConnection.Call(ct));
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            errors.Record("DeregisterWorker (rescuer)", ex);
        }

        var withoutAction = holder.Keys.Count(id => !perTask.ContainsKey(id));
        var severalActions = perTask.Values.Count(n => n > 1);
        var verified = errors.Count == 0 && releasedOnce == total && duplicates == 0 && missing == 0 && unexpected == 0 && notNewer == 0 &&
                       withoutAction == 0 && severalActions == 0 && zombieRefused == total && rescuerAccepted == total && storedOk;
        var check = verified
            ? $"ok: all {total} re-leased exactly once with a newer token; {total} late completions refused; one action each; {stored}"
            : "MISMATCH: " + string.Join("; ", new[]
            {
                missing > 0 ? $"{missing} NOT re-leased" : null,
                duplicates > 0 ? $"{duplicates} DUPLICATE re-leases" : null,
                unexpected > 0 ? $"{unexpected} unexpected tasks leased" : null,
                notNewer > 0 ? $"{notNewer} re-leased WITHOUT a newer fencing token" : null,
                withoutAction > 0 ? $"{withoutAction} tasks without a recovery action" : null,
                severalActions > 0 ? $"{severalActions} tasks with SEVERAL recovery actions" : null,
                zombieRefused != total ? $"{total - zombieRefused} late completions of dead workers NOT refused" : null,
                rescuerAccepted != total ? $"{total - rescuerAccepted} rescuer completions refused" : null,
                storedOk ? null : stored,
                errors.Count > 0 ? $"{errors.Count} failed calls" : null,
            }.Where(p => p is not null));
        return Result(context, name, deadWorkers, total, sinceDeath, sinceLastBeat, serviceTimes, releasedOnce, duplicates, missing, unexpected, notNewer,
            byLost, mine.Count - byLost, byTrigger, withoutAction, severalActions, zombieRefused, rescuerAccepted, stored, errors, check, verified);
    }

    private static WorkerDeathResult Result(
        RecoveryContext context, string name, int deadWorkers, int total, DelayDistribution? sinceDeath, DelayDistribution? sinceLastBeat,
        DelayDistribution? serviceTimes, int releasedOnce, int duplicates, int missing, int unexpected, int notNewer, int byLost, int byScan,
        IReadOnlyDictionary<string, int> byTrigger, int withoutAction, int severalActions, int zombieRefused, int rescuerAccepted, string stored,
        CallErrors errors, string check, bool verified = false) =>
        new(name, deadWorkers, total, context.HeartbeatInterval.TotalSeconds, context.HeartbeatTtl.TotalSeconds, RecoveryProfile.ScanInterval.TotalSeconds,
            RecoveryProfile.LeaderLease.TotalSeconds, context.Profile.DeadWorkerLease.TotalSeconds, sinceDeath, sinceLastBeat, serviceTimes,
            releasedOnce, duplicates, missing, unexpected, notNewer, byLost, byScan, byTrigger, withoutAction, severalActions, zombieRefused,
            rescuerAccepted, stored, errors.Count, errors.Distinct, verified, check);

    private static double Seconds(long from, long to) => (to - from) / (double)Stopwatch.Frequency;

    private static async Task<CompleteTasksResponse?> CompleteAsync(
        RecoveryContext context, IEnumerable<(string TaskId, long Token)> leases, string call, CallErrors errors, CancellationToken ct)
    {
        var request = new CompleteTasksRequest();
        request.Completions.AddRange(leases.Select(l => new TaskCompletion { TaskId = l.TaskId, FencingToken = l.Token, Result = "{}" }));
        if (request.Completions.Count == 0)
        {
            return null;
        }

        try
        {
            return await context.Queue.Queue.CompleteTasksAsync(request, QueueConnection.Call(ct));
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            errors.Record(call, ex);
            return null;
        }
    }

    /// <summary>Recovery actions recorded at or after <paramref name="since"/>, every page.</summary>
    private static async Task<List<Lifeline.Recovery.V1.RecoveryAction>> ListActionsAsync(
        RecoveryConnection recovery, DateTime since, CallErrors errors, CancellationToken ct)
    {
        var actions = new List<Lifeline.Recovery.V1.RecoveryAction>();
        var request = new ListRecoveryActionsRequest { Since = Timestamp.FromDateTime(since), PageSize = 1_000 };
        try
        {
            do
            {
                var page = await recovery.Recovery.ListRecoveryActionsAsync(request, RecoveryConnection.Call(ct));
                actions.AddRange(page.Actions);
                request.PageToken = page.NextPageToken;
            }
            while (request.PageToken.Length > 0);
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            errors.Record("ListRecoveryActions", ex);
        }

        return actions;
    }

    private static string TriggerName(RecoveryTrigger trigger) => trigger switch
    {
        RecoveryTrigger.WorkerLost => "worker_lost",
        RecoveryTrigger.WorkerGone => "worker_gone",
        RecoveryTrigger.LeaseExpired => "lease_expired",
        RecoveryTrigger.NotStarted => "not_started",
        RecoveryTrigger.TimedOut => "timed_out",
        _ => trigger.ToString(),
    };

    /// <summary>One re-lease seen by the rescuer: the task, its new fencing token, when the LeaseTasks answer arrived (Stopwatch timestamp).</summary>
    private sealed record Lease(string TaskId, long Token, long At);

    /// <summary>
    /// A live worker long-polling LeaseTasks (start = true) in a loop, as a real worker waits for work. It is stopped
    /// between calls, never in the middle of one, so no lease the queue granted can go unrecorded.
    /// </summary>
    private sealed class Rescuer(QueueConnection queue, string workerId, string taskType, TimeSpan lease, CallErrors errors)
    {
        private readonly ConcurrentQueue<Lease> _leases = new();
        private volatile bool _stopped;
        private int _count;

        public int Count => Volatile.Read(ref _count);

        public IReadOnlyList<Lease> Leases => _leases.ToArray();

        public void Stop() => _stopped = true;

        public async Task RunAsync(CancellationToken ct)
        {
            var request = new LeaseTasksRequest
            {
                WorkerId = workerId,
                TaskTypes = { taskType },
                MaxTasks = RescuerBatch,
                LeaseDuration = Duration.FromTimeSpan(lease),
                Wait = Duration.FromTimeSpan(RescuerWait),
                Start = true,
            };
            while (!_stopped && !ct.IsCancellationRequested)
            {
                try
                {
                    var response = await queue.Queue.LeaseTasksAsync(request, QueueConnection.Call(ct));
                    var at = Stopwatch.GetTimestamp();
                    foreach (var task in response.Tasks)
                    {
                        _leases.Enqueue(new Lease(task.Id, task.FencingToken, at));
                    }

                    Interlocked.Add(ref _count, response.Tasks.Count);
                }
                catch (RpcException) when (ct.IsCancellationRequested)
                {
                    return;
                }
                catch (RpcException ex)
                {
                    errors.Record("LeaseTasks (rescuer)", ex);
                    await Task.Delay(100, ct);
                }
            }
        }
    }
}
