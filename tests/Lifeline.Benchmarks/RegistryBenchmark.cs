using System.Globalization;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;
using Lifeline.Benchmarks.Scenarios.Registry;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks;

/// <summary>
/// The registry section of a run: start (or reach) the registry service, warm up, register the fleet,
/// beat it with unary calls and then on streams, and time the detection of workers that stop.
/// </summary>
internal static class RegistryBenchmark
{
    public static async Task<RegistrySection> RunAsync(
        BenchmarkOptions options, RegistryProfile profile, LocalInfrastructure? infrastructure, string tenant, CancellationToken ct)
    {
        var load = MachineInfo.LoadAverage();
        Console.WriteLine($"Registry (load average {load})");
        await using var target = options.RegistryUrl is { } url
            ? ServiceTarget.Existing(ServiceDefinition.Registry, url, options.RegistryPid)
            : await ServiceTarget.StartLocalAsync(ServiceDefinition.Registry, infrastructure!, ct);
        Console.WriteLine($"Target: {target.Description}");
        using var connection = RegistryConnection.Open(target.Url, tenant);
        await using var fleet = new WorkerFleet(connection, profile.Workers, RegistryScenarios.FleetPrefix.TrimEnd('-'));
        var context = new RegistryContext(connection, target, profile, fleet);
        var memory = new List<MemoryPhase>();
        void RecordMemory(string phase, ServiceMemory? reading)
        {
            if (reading is not null)
            {
                memory.Add(new MemoryPhase(phase, reading));
            }
        }

        await context.EnsureReachableAsync(ct);
        RecordMemory("idle after start", target.ReadMemory());

        // Every lost event of the run: none may name a fleet worker (they never stop beating).
        await using var lostWatch = new EventWatch(connection, [WorkerEventType.Lost], ct);

        context.HeartbeatInterval = await WarmUpAsync(context, ct);
        Console.WriteLine($"  warm-up    {profile.WarmUpWorkers} workers registered, beaten (unary and streams), deregistered; " +
                          $"heartbeat interval {context.HeartbeatInterval.TotalSeconds:0.#} s, TTL {context.HeartbeatTtl.TotalSeconds:0.#} s");
        RecordMemory("after warm-up", target.ReadMemory());

        // From here on, registered fleet workers keep beating at the interval the registry asked for.
        fleet.StartKeepAlive(context.HeartbeatInterval);
        var registration = await RegistrationScenario.RunAsync(context, ct);
        target.EnsureServiceRunning();
        RecordMemory("after registration", registration.Memory);
        Console.WriteLine($"  registry   {$"RegisterWorker × {registration.Workers:N0} ({registration.Callers} callers)",-52} " +
                          $"{registration.RegistrationsPerSecond,8:0} /s       {registration.Check}");

        var heartbeats = new List<HeartbeatResult>();
        foreach (var scenario in new Func<RegistryContext, CancellationToken, Task<HeartbeatResult>>[]
                 { UnaryHeartbeatScenario.RunAsync, StreamHeartbeatScenario.RunAsync })
        {
            var result = await scenario(context, ct);
            target.EnsureServiceRunning();
            heartbeats.Add(result);
            RecordMemory(result.Mode == UnaryHeartbeatScenario.Mode ? "end of unary heartbeat window" : "end of stream window (streams open)", result.Memory);
            Console.WriteLine($"  registry   {$"{result.Mode} × {result.Workers:N0} workers, 1/s for {result.WindowSeconds:0} s",-52} " +
                              $"{result.AchievedPerSecond,8:0} /s       {(result.Sustained ? "sustained" : "NOT sustained")}; {result.Check}");
        }

        var detection = await DetectionScenario.RunAsync(context, ct);
        target.EnsureServiceRunning();
        RecordMemory("after detection", target.ReadMemory());
        Console.WriteLine($"  registry   {$"detection of {detection.Workers} stopped workers",-52} " +
                          $"{detection.AfterLapse?.P50Seconds ?? double.NaN,8:0.00} s p50  {detection.Check}");

        var fleetLost = lostWatch.Events.Count(e => e.Event.WorkerName.StartsWith(RegistryScenarios.FleetPrefix, StringComparison.Ordinal));
        return new RegistrySection(
            new TargetInfo(target.Url.ToString(), target.Description), load, registration, heartbeats, detection,
            fleet.KeepAliveBeats, fleet.KeepAliveErrors.Count, fleet.KeepAliveErrors.Distinct, fleetLost, memory,
            target.Output?.ProblemCount ?? 0, target.Output?.Problems() ?? []);
    }

    /// <summary>
    /// Registers, beats (unary and on streams) and deregisters a few workers, so JIT, connection and
    /// database pools are warm; returns the heartbeat interval the registry gives workers.
    /// </summary>
    private static async Task<TimeSpan> WarmUpAsync(RegistryContext context, CancellationToken ct)
    {
        var registry = context.Connection.Registry;
        var names = Enumerable.Range(1, context.Profile.WarmUpWorkers).Select(i => string.Create(CultureInfo.InvariantCulture, $"warmup-{i:D4}"));
        try
        {
            var workers = new List<RegisterWorkerResponse>();
            foreach (var chunk in names.Chunk(16))
            {
                workers.AddRange(await Task.WhenAll(chunk.Select(name =>
                    registry.RegisterWorkerAsync(RegistryContext.Registration(name), RegistryConnection.Call(ct)).ResponseAsync)));
            }

            HeartbeatRequest Beat(Worker w) => new() { WorkerId = w.Id, SessionEpoch = w.SessionEpoch, Status = WorkerStatus.Online };
            for (var round = 0; round < 5; round++)
            {
                await Task.WhenAll(workers.Select(w => registry.HeartbeatAsync(Beat(w.Worker), RegistryConnection.Call(ct)).ResponseAsync));
            }

            await Task.WhenAll(workers.Select(async w =>
            {
                using var call = registry.HeartbeatStream(RegistryConnection.Stream(ct));
                for (var beat = 0; beat < 3; beat++)
                {
                    await call.RequestStream.WriteAsync(new HeartbeatStreamRequest { Beat = Beat(w.Worker) }, ct);
                    if (!await call.ResponseStream.MoveNext(ct))
                    {
                        throw new InvalidOperationException("The registry ended a heartbeat stream during the warm-up.");
                    }
                }

                await call.RequestStream.CompleteAsync();
                while (await call.ResponseStream.MoveNext(ct))
                {
                }
            }));

            await Task.WhenAll(workers.Select(w =>
                registry.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = w.Worker.Id }, RegistryConnection.Call(ct)).ResponseAsync));
            return workers[0].HeartbeatInterval.ToTimeSpan();
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            // Every scenario would fail the same way.
            throw new InvalidOperationException($"The registry warm-up failed, so the registry service is not working: {ex.StatusCode} {ex.Status.Detail}", ex);
        }
    }
}
