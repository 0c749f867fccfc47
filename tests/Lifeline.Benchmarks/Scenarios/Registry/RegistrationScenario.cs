using System.Diagnostics;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>
/// Registers the whole fleet with concurrent RegisterWorker calls (each a durable PostgreSQL transaction
/// writing the worker, its event and its circuit breaker, then its Redis entry). Workers registered
/// early are kept alive by the fleet's keep-alive while the rest register, as real workers would beat.
/// </summary>
internal static class RegistrationScenario
{
    public const string Call = "RegisterWorker";
    private const int MaxAttempts = 3;

    public static async Task<RegistrationResult> RunAsync(RegistryContext context, CancellationToken ct)
    {
        var workers = context.Fleet.Workers;
        var callers = context.Profile.RegisterCallers;
        var errors = new CallErrors();
        var latencies = new LatencyRecorder(workers.Count * MaxAttempts);
        var keepAliveBefore = context.Fleet.KeepAliveBeats;
        var next = -1;
        var created = 0;
        var cpu = CpuMeter.Start(context.Target.CpuSources);
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, callers).Select(_ => Task.Run(async () =>
        {
            int index;
            while ((index = Interlocked.Increment(ref next)) < workers.Count && !ct.IsCancellationRequested)
            {
                var worker = workers[index];
                for (var attempt = 1; attempt <= MaxAttempts; attempt++)
                {
                    var callStarted = Stopwatch.GetTimestamp();
                    try
                    {
                        var response = await context.Connection.Registry.RegisterWorkerAsync(
                            RegistryContext.Registration(worker.Name), RegistryConnection.Call(ct));
                        latencies.Record(callStarted);
                        worker.SetRegistered(response.Worker, callStarted);
                        if (response.Created)
                        {
                            Interlocked.Increment(ref created);
                        }
                        else
                        {
                            errors.Record($"{Call} answered created=false for a new name (session {response.Worker.SessionEpoch})");
                        }

                        break;
                    }
                    catch (RpcException) when (ct.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (RpcException ex)
                    {
                        errors.Record(Call, ex);
                    }
                }
            }
        }, CancellationToken.None)));
        var seconds = ScenarioContext.SecondsSince(started, Stopwatch.GetTimestamp());
        var cpuUse = cpu.Stop();
        ct.ThrowIfCancellationRequested();
        var keepAliveBeats = context.Fleet.KeepAliveBeats - keepAliveBefore;
        var memory = context.Target.ReadMemory();

        // Untimed: the registry's own list must hold every worker, online.
        var registered = workers.Count(w => w.Registered);
        var online = await context.CountWorkersAsync(WorkerStatus.Online, RegistryScenarios.FleetPrefix, ct);
        var verified = registered == workers.Count && created == workers.Count && online == workers.Count;
        var check = verified
            ? $"ok: {online:N0} listed online"
            : $"MISMATCH: {registered:N0} registered ({created:N0} created), {online:N0} listed online; expected {workers.Count:N0}";
        return new RegistrationResult(
            workers.Count, callers, seconds, registered / seconds, latencies.Summarize(), keepAliveBeats, cpuUse,
            errors.Count, errors.Distinct, verified, check, memory);
    }
}
