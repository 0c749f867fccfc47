using System.Diagnostics;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Enqueue;
using Lifeline.Benchmarks.Scenarios.Registry;
using Lifeline.Recovery.V1;
using Task = System.Threading.Tasks.Task;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;

namespace Lifeline.Benchmarks.Scenarios.Recovery;

/// <summary>
/// Scan time over a large in-flight set: tasks are enqueued in batches, leased and started by live workers that
/// keep beating (leases of an hour), so nothing is recoverable; then RunRecoveryScan runs on the leader a few
/// times. Each scan pages through every assigned, running and timed-out task (ListTasks) and the registry's
/// workers, classifies each task, and must act on none.
/// </summary>
internal static class RecoveryScanScenario
{
    public const string TaskType = "bench.recovery-scan";
    private const int LeaseConcurrency = 4;
    private static readonly TimeSpan HolderLease = TimeSpan.FromHours(1);

    public static async Task<RecoveryScanResult> RunAsync(
        RecoveryContext context, RecoveryConnection recovery, ServiceTarget recoveryTarget, CancellationToken ct)
    {
        var profile = context.Profile;
        var errors = new CallErrors();
        await using var holders = new WorkerFleet(context.Registry, profile.ScanHolders, "scan-holder");
        RecoveryScanResult Failed(string why, double enqueueSeconds = 0, double leaseSeconds = 0) =>
            new(profile.ScanTasks, profile.ScanHolders, enqueueSeconds, leaseSeconds, [], double.NaN, double.NaN, double.NaN, null, null,
                errors.Count, errors.Distinct, false, $"MISMATCH: {why}");

        if (!await context.RegisterAsync(holders, TaskType, errors, ct))
        {
            return Failed("not every holder registered");
        }

        var started = Stopwatch.GetTimestamp();
        var producer = new TaskProducer(context.Queue, TaskType, profile.ScanTasks, profile.EnqueueBatchSize, errors);
        await producer.RunAsync(profile.EnqueueCallers, ct);
        var enqueueSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        if (producer.Created != profile.ScanTasks)
        {
            return Failed($"{producer.Created:N0} of {profile.ScanTasks:N0} tasks enqueued", enqueueSeconds);
        }

        // Every holder leases and starts its share; a few holders lease at a time.
        started = Stopwatch.GetTimestamp();
        var leased = 0;
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, LeaseConcurrency).Select(_ => Task.Run(async () =>
        {
            int index;
            while ((index = Interlocked.Increment(ref next)) < holders.Workers.Count)
            {
                var share = profile.ScanTasks / profile.ScanHolders + (index < profile.ScanTasks % profile.ScanHolders ? 1 : 0);
                var tasks = await context.LeaseAsync(holders.Workers[index], TaskType, share, HolderLease, errors, ct);
                Interlocked.Add(ref leased, tasks.Count);
            }
        }, CancellationToken.None)));
        var leaseSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var (storedOk, stored) = await context.CheckStoredAsync(TaskType, TaskStatus.Running, profile.ScanTasks, ct);
        if (leased != profile.ScanTasks || !storedOk)
        {
            return Failed($"{leased:N0} of {profile.ScanTasks:N0} leased; {stored}", enqueueSeconds, leaseSeconds);
        }

        await RecoveryContext.WaitForLeadershipAsync(recovery, recoveryTarget, ct);
        var runs = new List<ScanRun>();
        var recoveryCpu = CpuMeter.Start(recoveryTarget.CpuSources);
        var queueCpu = CpuMeter.Start(context.QueueTarget.CpuSources);
        for (var i = 0; i < profile.Scans; i++)
        {
            var callStarted = Stopwatch.GetTimestamp();
            try
            {
                var scan = await recovery.Recovery.RunRecoveryScanAsync(new RunRecoveryScanRequest(), RecoveryConnection.Scan(ct));
                runs.Add(new ScanRun(scan.Examined, scan.SkippedAlive, scan.Actions.Count, scan.Duration.ToTimeSpan().TotalSeconds,
                    Stopwatch.GetElapsedTime(callStarted).TotalSeconds));
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                errors.Record("RunRecoveryScan", ex);
            }

            recoveryTarget.EnsureServiceRunning();
            context.EnsureServicesRunning();
        }

        var cpu = recoveryCpu.Stop();
        var queueCores = queueCpu.Stop().ServiceCores;

        var durations = runs.Select(r => r.ServiceSeconds).Order().ToArray();
        var min = durations.Length == 0 ? double.NaN : durations[0];
        var median = durations.Length == 0 ? double.NaN
            : durations.Length % 2 == 1 ? durations[durations.Length / 2] : (durations[durations.Length / 2 - 1] + durations[durations.Length / 2]) / 2;
        var wrongCount = runs.Count(r => r.Examined != profile.ScanTasks);
        var acted = runs.Sum(r => r.Actions);
        var notSkipped = runs.Count(r => r.SkippedAlive != r.Examined);
        (storedOk, stored) = await context.CheckStoredAsync(TaskType, TaskStatus.Running, profile.ScanTasks, ct);
        var verified = errors.Count == 0 && runs.Count == profile.Scans && wrongCount == 0 && acted == 0 && notSkipped == 0 && storedOk;
        var check = verified
            ? $"ok: every scan examined all {profile.ScanTasks:N0}, all left alone; {stored} after"
            : "MISMATCH: " + string.Join("; ", new[]
            {
                runs.Count < profile.Scans ? $"{profile.Scans - runs.Count} scans failed" : null,
                wrongCount > 0 ? $"{wrongCount} scans examined a different count ({string.Join(", ", runs.Select(r => r.Examined.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)))})" : null,
                acted > 0 ? $"{acted} tasks TAKEN from live workers" : null,
                notSkipped > 0 ? $"{notSkipped} scans did not count every task as alive" : null,
                storedOk ? null : stored,
                errors.Count > 0 ? $"{errors.Count} failed calls" : null,
            }.Where(p => p is not null));
        return new RecoveryScanResult(profile.ScanTasks, profile.ScanHolders, enqueueSeconds, leaseSeconds, runs, min, median,
            double.IsFinite(median) && median > 0 ? profile.ScanTasks / median : double.NaN, cpu, queueCores, errors.Count, errors.Distinct, verified, check);
    }
}
