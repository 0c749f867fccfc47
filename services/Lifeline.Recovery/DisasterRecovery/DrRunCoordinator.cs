using System.Collections.Concurrent;
using System.Threading.Channels;
using Google.Protobuf.WellKnownTypes;
using Lifeline.Recovery.Data;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.DisasterRecovery.Steps;
using Lifeline.Recovery.Leadership;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Recovery.DisasterRecovery;

/// <summary>
/// Starts, runs, cancels and cleans up disaster-recovery runs.
/// <list type="bullet">
/// <item>One run at a time across all instances: the run is inserted RUNNING, and the unique partial index
/// <c>ux_dr_runs_one_running</c> refuses a second → ABORTED <c>RECOVERY_IN_PROGRESS</c>.</item>
/// <item>The run executes in a task this service owns, not in the call: a caller that disconnects does not stop
/// it. The call streams its progress (each step when it starts and when it ends, in order), then the run.</item>
/// <item>Steps run in order, each under its own timeout. A failed critical step stops the run (FAILED, the rest
/// SKIPPED); a failed non-critical step is recorded and the run goes on (COMPLETED_WITH_FAILURES at the end).</item>
/// <item>Cancel sets <c>cancel_requested</c> (any instance); the executing instance polls it and interrupts the
/// current step through its token → CANCELLED, the rest SKIPPED.</item>
/// <item>While a run executes, its instance holds the role <c>dr-run:&lt;id&gt;</c> in <c>lifeline_leaders</c> (the
/// leader-election table, <see cref="LeadershipTable"/>), renewed every 5 s with a 15 s TTL. A RUNNING run whose role
/// has expired (or is missing) belongs to an instance that died: it is marked FAILED (saying so) at startup and
/// whenever it blocks a new run (<see cref="DrOrphanSweep"/> at start). A graceful shutdown fails its own runs the same way
/// before it stops.</item>
/// </list>
/// </summary>
public sealed partial class DrRunCoordinator(
    IDbContextFactory<RecoveryDbContext> contexts, IEnumerable<IDrStepExecutor> executors, NpgsqlDataSource dataSource, [FromKeyedServices(RecoveryLeadership.Role)] LeaderElection leader,
    IOptions<RecoveryOptions> options, TimeProvider time, ILogger<DrRunCoordinator> logger) : IHostedService
{
    private static readonly TimeSpan LivenessTtl = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan LivenessRefresh = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan CancelPoll = TimeSpan.FromMilliseconds(200);

    private readonly Dictionary<DrStepType, IDrStepExecutor> _executors = executors.ToDictionary(e => e.Type);
    private readonly ConcurrentDictionary<Guid, ActiveRun> _active = new();
    private readonly CancellationTokenSource _stopping = new();

    private sealed class ActiveRun(CancellationToken stopping)
    {
        public CancellationTokenSource Cancel { get; } = CancellationTokenSource.CreateLinkedTokenSource(stopping);
        public Channel<RunDisasterRecoveryPlanResponse> Events { get; } = Channel.CreateUnbounded<RunDisasterRecoveryPlanResponse>(
            new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        public Task Completion { get; set; } = Task.CompletedTask;
        public bool CancelRequested { get; set; }

        /// <summary>The term of the run's liveness role (<see cref="RunRole"/>) this instance holds; 0 before the first claim.</summary>
        public long LivenessTerm { get; set; }
    }

    /// <summary>The role an instance holds in <c>lifeline_leaders</c> while it executes the run.</summary>
    public static string RunRole(Guid runId) => $"dr-run:{runId}";

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask; // orphans: DrOrphanSweep

    /// <summary>Marks FAILED every RUNNING run whose instance is gone (at start; a run that blocks a new one is checked then too).</summary>
    public async Task FailOrphansAsync(CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        foreach (var run in await db.DrRuns.AsNoTracking().Where(r => r.Status == (int)DrRunStatus.Running).ToListAsync(ct))
        {
            if (await IsOrphanedAsync(run))
            {
                await FailOrphanAsync(run, ct);
            }
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await Task.WhenAll(_active.Values.Select(a => a.Completion)).WaitAsync(cancellationToken);
    }

    /// <summary>Starts a run of the plan; returns the stream of its events (ends with the run).</summary>
    public async Task<ChannelReader<RunDisasterRecoveryPlanResponse>> StartRunAsync(Guid planId, string startedBy, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var plan = await db.DrPlans.AsNoTracking().FirstOrDefaultAsync(p => p.Id == planId, ct) ?? throw new NotFoundException("dr_plan", planId.ToString());
        var steps = DrRecords.FromJson<DrStep>(plan.Steps);
        var results = steps.Select(s => new DrStepResult { Name = s.Name, Type = s.Type, Critical = s.Critical, Status = DrStepStatus.Pending }).ToList();
        var run = new DrRunEntity
        {
            Id = Guid.CreateVersion7(),
            PlanId = planId,
            Status = (int)DrRunStatus.Running,
            Steps = DrRecords.ToJson(results),
            StartedBy = startedBy,
            StartedAt = time.Now(),
            Instance = leader.Holder,
        };
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                db.DrRuns.Add(run);
                await db.SaveChangesAsync(ct);
                break;
            }
            catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation, ConstraintName: "ux_dr_runs_one_running" })
            {
                db.ChangeTracker.Clear();
                var blocking = await db.DrRuns.AsNoTracking().FirstOrDefaultAsync(r => r.Status == (int)DrRunStatus.Running, ct);
                if (blocking is null && attempt < 3)
                {
                    continue; // it just finished
                }
                if (blocking is not null && attempt < 3 && await IsOrphanedAsync(blocking))
                {
                    await FailOrphanAsync(blocking, ct);
                    continue;
                }
                throw DrErrors.InProgress(blocking?.Id ?? Guid.Empty, blocking?.PlanId ?? Guid.Empty, blocking?.Instance ?? "unknown");
            }
        }

        var active = new ActiveRun(_stopping.Token);
        _active[run.Id] = active;
        try
        {
            await KeepAliveAsync(run.Id, active, CancellationToken.None); // the run is started: the caller leaving does not undo it
        }
        catch (Exception e) when (e is NpgsqlException or OperationCanceledException)
        {
            LogWatchFailed(logger, run.Id, e); // the run's watch keeps trying
        }
        LogRunStarted(logger, run.Id, plan.Name, startedBy);
        active.Completion = Task.Run(() => ExecuteAsync(run.Id, plan, steps, results, active), CancellationToken.None);
        return active.Events.Reader;
    }

    /// <summary>Asks the run to stop (whichever instance executes it) and waits a little for it to end; returns the run as it stands.</summary>
    public async Task<DisasterRecoveryRun> CancelAsync(Guid runId, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var updated = await db.DrRuns.Where(r => r.Id == runId && r.Status == (int)DrRunStatus.Running)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.CancelRequested, true), ct);
        if (updated == 0)
        {
            var existing = await db.DrRuns.AsNoTracking().FirstOrDefaultAsync(r => r.Id == runId, ct) ?? throw new NotFoundException("dr_run", runId.ToString());
            throw DrErrors.NotRunning(runId, ((DrRunStatus)existing.Status).ToString());
        }
        LogCancelRequested(logger, runId);
        if (_active.TryGetValue(runId, out var local))
        {
            local.CancelRequested = true;
            try
            {
                await local.Cancel.CancelAsync();
                await local.Completion.WaitAsync(TimeSpan.FromSeconds(10), time, ct);
            }
            catch (ObjectDisposedException)
            {
                // it finished just now
            }
            catch (TimeoutException)
            {
                // still ending its current step: the run as it stands
            }
        }
        else
        {
            for (var i = 0; i < 50; i++)
            {
                var status = await db.DrRuns.AsNoTracking().Where(r => r.Id == runId).Select(r => r.Status).FirstAsync(ct);
                if (status != (int)DrRunStatus.Running)
                {
                    break;
                }
                await Task.Delay(CancelPoll, time, ct);
            }
        }
        var run = await db.DrRuns.AsNoTracking().FirstAsync(r => r.Id == runId, ct);
        return run.ToProto();
    }

    private async Task ExecuteAsync(Guid runId, DrPlanEntity plan, List<DrStep> steps, List<DrStepResult> results, ActiveRun active)
    {
        using var watch = CancellationTokenSource.CreateLinkedTokenSource(active.Cancel.Token);
        var watcher = WatchAsync(runId, active, watch.Token);
        var status = DrRunStatus.Completed;
        string? stoppedBy = null;
        try
        {
            for (var i = 0; i < steps.Count; i++)
            {
                var step = steps[i];
                var result = results[i];
                if (stoppedBy is not null || active.Cancel.IsCancellationRequested)
                {
                    result.Status = DrStepStatus.Skipped;
                    result.Message = stoppedBy is not null ? $"not run: critical step '{stoppedBy}' failed" : NotRunBecause(active);
                    continue;
                }
                result.Status = DrStepStatus.Running;
                result.StartedAt = Now();
                await SaveAsync(runId, results, DrRunStatus.Running, null);
                Publish(active, runId, i, result);

                var outcome = await RunStepAsync(new DrStepContext(runId, plan.Id, plan.Name, i, step, results.Take(i).Select(r => r.Clone()).ToList()), active);
                result.Status = outcome.Succeeded ? DrStepStatus.Succeeded : DrStepStatus.Failed;
                result.Message = outcome.Message;
                result.FinishedAt = Now();
                LogStepDone(logger, runId, i, step.Name, result.Status.ToString(), outcome.Message);
                await SaveAsync(runId, results, DrRunStatus.Running, null);
                Publish(active, runId, i, result);
                if (!outcome.Succeeded && step.Critical && !active.Cancel.IsCancellationRequested)
                {
                    stoppedBy = step.Name;
                }
            }
            status = active.CancelRequested ? DrRunStatus.Cancelled
                : active.Cancel.IsCancellationRequested || stoppedBy is not null ? DrRunStatus.Failed
                : results.Any(r => r.Status == DrStepStatus.Failed) ? DrRunStatus.CompletedWithFailures
                : DrRunStatus.Completed;
        }
        catch (Exception e)
        {
            // The run's row could not be written (or was failed by another instance), or the run broke otherwise: record what we can.
            LogRunBroken(logger, runId, e);
            status = DrRunStatus.Failed;
            foreach (var r in results.Where(r => r.Status is DrStepStatus.Pending or DrStepStatus.Running))
            {
                r.Status = r.Status == DrStepStatus.Running ? DrStepStatus.Failed : DrStepStatus.Skipped;
                r.Message = $"not completed: {e.Message}";
                r.FinishedAt ??= Now();
            }
        }
        finally
        {
            await watch.CancelAsync();
            await watcher;
        }
        try
        {
            await SaveAsync(runId, results, status, time.Now());
            LogRunFinished(logger, runId, status.ToString());
            await LeadershipTable.ForgetAsync(dataSource, RunRole(runId), leader.Holder, CancellationToken.None); // else it expires on its own
            await using var db = await contexts.CreateDbContextAsync(CancellationToken.None);
            var final = await db.DrRuns.AsNoTracking().FirstAsync(r => r.Id == runId);
            active.Events.Writer.TryWrite(new RunDisasterRecoveryPlanResponse { Run = final.ToProto() });
        }
        catch (Exception e)
        {
            LogRunBroken(logger, runId, e);
        }
        finally
        {
            // However the end went, the caller's stream ends and the run is no longer this instance's.
            active.Events.Writer.TryComplete();
            _active.TryRemove(runId, out _);
            active.Cancel.Dispose();
        }
    }

    private async Task<DrStepOutcome> RunStepAsync(DrStepContext context, ActiveRun active)
    {
        if (!_executors.TryGetValue(context.Step.Type, out var executor))
        {
            return DrStepOutcome.Failed($"no executor for step type {context.Step.Type}");
        }
        var timeout = context.Step.Timeout();
        using var step = CancellationTokenSource.CreateLinkedTokenSource(active.Cancel.Token);
        step.CancelAfter(timeout);
        try
        {
            return await executor.ExecuteAsync(context, step.Token);
        }
        catch (OperationCanceledException) when (active.Cancel.IsCancellationRequested)
        {
            return DrStepOutcome.Failed("interrupted: " + Why(active));
        }
        catch (OperationCanceledException) when (step.IsCancellationRequested)
        {
            return DrStepOutcome.Failed($"timed out after {timeout}");
        }
        catch (global::Grpc.Core.RpcException e) when (e.StatusCode == global::Grpc.Core.StatusCode.Cancelled && active.Cancel.IsCancellationRequested)
        {
            return DrStepOutcome.Failed("interrupted: " + Why(active));
        }
        catch (global::Grpc.Core.RpcException e) when (e.StatusCode == global::Grpc.Core.StatusCode.Cancelled && step.IsCancellationRequested)
        {
            return DrStepOutcome.Failed($"timed out after {timeout}");
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            return DrStepOutcome.Failed($"{e.GetType().Name}: {e.Message}");
        }
    }

    private static string NotRunBecause(ActiveRun active) => "not run: " + Why(active);

    private static string Why(ActiveRun active) =>
        active.CancelRequested ? "the run was cancelled" : "the recovery instance executing the run is stopping";

    /// <summary>Watches for a cancel request from any instance and keeps the run's liveness role, until the run ends.</summary>
    private Task WatchAsync(Guid runId, ActiveRun active, CancellationToken ct)
    {
        var lastBeat = time.GetTimestamp();
        return new LoopRunner($"{nameof(DrRunCoordinator)}.watch", logger, LoopBackoff.Between(CancelPoll, LivenessRefresh), time).RunAsync(async token =>
        {
            await using (var db = await contexts.CreateDbContextAsync(token))
            {
                if (await db.DrRuns.AsNoTracking().Where(r => r.Id == runId).Select(r => r.CancelRequested).FirstOrDefaultAsync(token))
                {
                    active.CancelRequested = true;
                    await active.Cancel.CancelAsync();
                    return LoopRunner.Done;
                }
            }
            if (time.GetElapsedTime(lastBeat) >= LivenessRefresh)
            {
                await KeepAliveAsync(runId, active, token);
                lastBeat = time.GetTimestamp();
            }
            return CancelPoll;
        }, ct, firstDelay: CancelPoll);
    }

    private async Task KeepAliveAsync(Guid runId, ActiveRun active, CancellationToken ct)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(LivenessRefresh);
        var claimed = await LeadershipTable.ClaimAsync(dataSource, RunRole(runId), leader.Holder, active.LivenessTerm, LivenessTtl, deadline.Token);
        active.LivenessTerm = claimed?.Term ?? 0;
    }

    private async Task SaveAsync(Guid runId, List<DrStepResult> results, DrRunStatus status, DateTime? finishedAt)
    {
        var json = DrRecords.ToJson(results);
        await using var db = await contexts.CreateDbContextAsync(CancellationToken.None);
        var updated = await db.DrRuns.Where(r => r.Id == runId && r.Status == (int)DrRunStatus.Running)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.Steps, json).SetProperty(r => r.Status, (int)status).SetProperty(r => r.FinishedAt, finishedAt));
        if (updated == 0)
        {
            throw new RunTakenOverException(runId);
        }
    }

    private static void Publish(ActiveRun active, Guid runId, int index, DrStepResult result) =>
        active.Events.Writer.TryWrite(new RunDisasterRecoveryPlanResponse
        {
            Progress = new DrProgress { RunId = runId.ToString(), StepIndex = index, Step = result.Clone() },
        });

    private Timestamp Now() => Timestamp.FromDateTime(time.Now());

    /// <summary>Whether a RUNNING run's instance is gone: not this instance's active run, and its liveness role has expired (or it is our own previous incarnation).</summary>
    private async Task<bool> IsOrphanedAsync(DrRunEntity run)
    {
        if (_active.ContainsKey(run.Id))
        {
            return false;
        }
        if (run.Instance == leader.Holder || (options.Value.InstanceId is { } id && run.Instance == id))
        {
            return true;
        }
        try
        {
            return await LeadershipTable.ReadAsync(dataSource, RunRole(run.Id), CancellationToken.None) is not { Current: true };
        }
        catch (NpgsqlException)
        {
            return false; // cannot tell: do not fail a run that may be alive
        }
    }

    private async Task FailOrphanAsync(DrRunEntity run, CancellationToken ct)
    {
        var why = $"the recovery instance {run.Instance} executing the run stopped";
        var results = DrRecords.FromJson<DrStepResult>(run.Steps);
        foreach (var r in results)
        {
            if (r.Status == DrStepStatus.Running)
            {
                r.Status = DrStepStatus.Failed;
                r.Message = "interrupted: " + why;
                r.FinishedAt = Now();
            }
            else if (r.Status == DrStepStatus.Pending)
            {
                r.Status = DrStepStatus.Skipped;
                r.Message = "not run: " + why;
            }
        }
        var json = DrRecords.ToJson(results);
        var finishedAt = time.Now();
        await using var db = await contexts.CreateDbContextAsync(ct);
        var updated = await db.DrRuns.Where(r => r.Id == run.Id && r.Status == (int)DrRunStatus.Running)
            .ExecuteUpdateAsync(s => s.SetProperty(r => r.Steps, json).SetProperty(r => r.Status, (int)DrRunStatus.Failed)
                .SetProperty(r => r.FinishedAt, finishedAt), ct);
        if (updated > 0)
        {
            LogOrphanFailed(logger, run.Id, run.Instance);
        }
        await LeadershipTable.ForgetAsync(dataSource, RunRole(run.Id), run.Instance, ct);
    }

    private sealed class RunTakenOverException(Guid runId)
        : Exception($"run {runId} is no longer running in the database (failed by another instance as orphaned)");

    [LoggerMessage(EventId = 4301, Level = LogLevel.Information, Message = "Disaster-recovery run {RunId} of plan {PlanName} started by {StartedBy}")]
    private static partial void LogRunStarted(ILogger logger, Guid runId, string planName, string startedBy);

    [LoggerMessage(EventId = 4302, Level = LogLevel.Information, Message = "Disaster-recovery run {RunId} step {Index} ({Step}): {Status}: {Message}")]
    private static partial void LogStepDone(ILogger logger, Guid runId, int index, string step, string status, string message);

    [LoggerMessage(EventId = 4303, Level = LogLevel.Information, Message = "Disaster-recovery run {RunId} finished: {Status}")]
    private static partial void LogRunFinished(ILogger logger, Guid runId, string status);

    [LoggerMessage(EventId = 4304, Level = LogLevel.Information, Message = "Cancel requested for disaster-recovery run {RunId}")]
    private static partial void LogCancelRequested(ILogger logger, Guid runId);

    [LoggerMessage(EventId = 4305, Level = LogLevel.Warning, Message = "Disaster-recovery run {RunId} was left running by instance {Instance}, which stopped; marked failed")]
    private static partial void LogOrphanFailed(ILogger logger, Guid runId, string instance);

    [LoggerMessage(EventId = 4307, Level = LogLevel.Warning, Message = "Disaster-recovery run {RunId}: liveness or cancel check failed")]
    private static partial void LogWatchFailed(ILogger logger, Guid runId, Exception exception);

    [LoggerMessage(EventId = 4308, Level = LogLevel.Error, Message = "Disaster-recovery run {RunId} could not be recorded")]
    private static partial void LogRunBroken(ILogger logger, Guid runId, Exception exception);
}
