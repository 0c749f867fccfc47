using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>
/// How soon a dead worker is noticed: workers of their own (the fleet keeps beating at the default
/// interval meanwhile) register, beat a few times, then all stop at once. A WatchWorkers stream, open
/// before they registered, records when each one's <c>lost</c> event arrives; exactly one per worker is
/// expected, and none for any other worker.
/// </summary>
internal static class DetectionScenario
{
    private const string Prefix = "detect-";
    private static readonly TimeSpan BeatSpacing = TimeSpan.FromSeconds(1);

    /// <summary>How long after the expected lapse the lost events may still come (a reconciliation pass is the backstop).</summary>
    private static readonly TimeSpan DetectionTimeout = TimeSpan.FromSeconds(30);

    public static async Task<DetectionResult> RunAsync(RegistryContext context, CancellationToken ct)
    {
        var profile = context.Profile;
        var registry = context.Connection.Registry;
        var errors = new CallErrors();
        await using var watch = new EventWatch(context.Connection, [WorkerEventType.Registered, WorkerEventType.Lost], ct);

        // The watch starts from "now" once the server runs it: a probe registration whose event arrives
        // proves it is live, so no event of the workers below can precede it.
        if (!await WatchIsLiveAsync(context, watch, ct))
        {
            return Failed(context, $"the WatchWorkers stream delivered no event of a probe registration{(watch.Failure is { } f ? $": {f}" : "")}", errors);
        }

        var workers = new (string Name, string Id, long Epoch)[profile.DetectionWorkers];
        await Task.WhenAll(Enumerable.Range(0, workers.Length).Select(async i =>
        {
            var name = $"{Prefix}{i + 1:D3}";
            try
            {
                var response = await registry.RegisterWorkerAsync(RegistryContext.Registration(name), RegistryConnection.Call(ct));
                workers[i] = (name, response.Worker.Id, response.Worker.SessionEpoch);
            }
            catch (RpcException ex) when (!ct.IsCancellationRequested)
            {
                errors.Record(RegistrationScenario.Call, ex);
                workers[i] = (name, "", 0);
            }
        }));

        // A few beats, one a second, all workers together; the last one sent is when each one's clock starts.
        var lastBeat = new DateTime[workers.Length];
        for (var round = 0; round < profile.DetectionBeats; round++)
        {
            if (round > 0)
            {
                await Task.Delay(BeatSpacing, ct);
            }

            await Task.WhenAll(Enumerable.Range(0, workers.Length).Where(i => workers[i].Epoch > 0).Select(async i =>
            {
                var sentAt = DateTime.UtcNow;
                try
                {
                    await registry.HeartbeatAsync(
                        new HeartbeatRequest { WorkerId = workers[i].Id, SessionEpoch = workers[i].Epoch, Status = WorkerStatus.Online },
                        RegistryConnection.Call(ct));
                    lastBeat[i] = sentAt;
                }
                catch (RpcException ex) when (!ct.IsCancellationRequested)
                {
                    errors.Record(UnaryHeartbeatScenario.Call, ex);
                }
            }));
        }

        // Worker id → index, of the workers that registered and beat.
        var ids = Enumerable.Range(0, workers.Length).Where(i => lastBeat[i] != default).ToDictionary(i => workers[i].Id);
        bool IsLost(ReceivedEvent e) => e.Event.Type == WorkerEventType.Lost;
        bool AllLost(IReadOnlyList<ReceivedEvent> events) =>
            events.Where(IsLost).Select(e => e.Event.WorkerId).Where(ids.ContainsKey).Distinct().Count() == ids.Count;

        var stoppedAt = lastBeat.Where(t => t != default).DefaultIfEmpty(DateTime.UtcNow).Max();
        var timeout = stoppedAt + context.HeartbeatTtl + DetectionTimeout - DateTime.UtcNow;
        await watch.WaitUntilAsync(AllLost, timeout, ct);

        // Any duplicate would most likely come from the next reconciliation pass (every 10 s by default).
        await Task.Delay(profile.DuplicateWait, ct);
        var events = watch.Events.Where(IsLost).ToList();
        var mine = events.Where(e => ids.ContainsKey(e.Event.WorkerId)).ToList();
        var others = events.Count - mine.Count;
        var firstPerWorker = mine.GroupBy(e => e.Event.WorkerId).Select(g => g.OrderBy(e => e.ReceivedAt).First()).ToList();
        var duplicates = mine.Count - firstPerWorker.Count;
        var missing = ids.Count - firstPerWorker.Count;
        var ttl = context.HeartbeatTtl.TotalSeconds;
        var sinceBeat = firstPerWorker.Select(e => (e.ReceivedAt - lastBeat[ids[e.Event.WorkerId]]).TotalSeconds).ToArray();
        var early = sinceBeat.Count(s => s < ttl);

        var verified = errors.Count == 0 && ids.Count == workers.Length && missing == 0 && duplicates == 0 && others == 0 && early == 0 && watch.Failure is null;
        var check = verified
            ? $"ok: exactly one lost event for each of the {workers.Length} workers, none for others"
            : "MISMATCH: " + string.Join("; ", new[]
            {
                ids.Count < workers.Length ? $"{workers.Length - ids.Count} did not register or beat" : null,
                missing > 0 ? $"{missing} MISSED (no lost event)" : null,
                duplicates > 0 ? $"{duplicates} DUPLICATE lost events" : null,
                others > 0 ? $"{others} lost events of OTHER workers" : null,
                early > 0 ? $"{early} reported lost BEFORE their TTL ran out" : null,
                watch.Failure,
                errors.Count > 0 ? $"{errors.Count} failed calls" : null,
            }.Where(p => p is not null));
        return new DetectionResult(
            workers.Length, context.HeartbeatInterval.TotalSeconds, ttl, mine.Count, firstPerWorker.Count, duplicates, missing, others,
            DelayDistribution.Of(sinceBeat),
            DelayDistribution.Of(sinceBeat.Select(s => s - ttl)),
            DelayDistribution.Of(firstPerWorker.Select(e => (e.ReceivedAt - e.Event.OccurredAt.ToDateTime()).TotalSeconds)),
            errors.Count, errors.Distinct, verified, check);
    }

    private static async Task<bool> WatchIsLiveAsync(RegistryContext context, EventWatch watch, CancellationToken ct)
    {
        const string probe = Prefix + "probe";
        for (var attempt = 0; attempt < 10; attempt++)
        {
            var response = await context.Connection.Registry.RegisterWorkerAsync(RegistryContext.Registration(probe), RegistryConnection.Call(ct));
            var epoch = response.Worker.SessionEpoch;
            if (await watch.WaitUntilAsync(
                    events => events.Any(e => e.Event.WorkerId == response.Worker.Id && e.Event.SessionEpoch == epoch), TimeSpan.FromSeconds(2), ct))
            {
                // Deregistered, so it never lapses (deregistered is not among the watched events).
                await context.Connection.Registry.DeregisterWorkerAsync(
                    new DeregisterWorkerRequest { WorkerId = response.Worker.Id }, RegistryConnection.Call(ct));
                return true;
            }
        }

        return false;
    }

    private static DetectionResult Failed(RegistryContext context, string check, CallErrors errors) =>
        new(context.Profile.DetectionWorkers, context.HeartbeatInterval.TotalSeconds, context.HeartbeatTtl.TotalSeconds, 0, 0, 0,
            context.Profile.DetectionWorkers, 0, null, null, null, errors.Count, errors.Distinct, false, $"MISMATCH: {check}");
}
