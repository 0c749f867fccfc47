using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>
/// Unary heartbeats: every worker of the fleet calls Heartbeat once per second for the window, on schedule
/// whether or not other workers' beats were answered (open loop across the fleet; many calls in flight at
/// once over the shared channel). Like a real worker's beat loop, a worker whose previous call is still
/// unanswered skips its beat, so a slow service shows as fewer beats sent, not as an unbounded backlog.
/// </summary>
internal static class UnaryHeartbeatScenario
{
    public const string Call = "Heartbeat";
    public const string Mode = "unary Heartbeat";

    public static async Task<HeartbeatResult> RunAsync(RegistryContext context, CancellationToken ct)
    {
        var workers = context.Fleet.Workers.Where(w => w.Registered).ToArray();
        var window = new HeartbeatWindow(workers, context.Profile.HeartbeatLeadIn, context.Profile.UnaryWindow, context.Target.CpuSources);
        var registry = context.Connection.Registry;

        async Task BeatAsync(FleetWorker worker, long sentAt)
        {
            try
            {
                var response = await registry.HeartbeatAsync(worker.Beat, RegistryConnection.Call(ct));
                window.Answer(sentAt);
                if (response.Status != WorkerStatus.Online)
                {
                    window.Errors.Record($"{Call} answered status {response.Status}");
                }
            }
            catch (RpcException ex)
            {
                window.Fail(sentAt);
                if (!ct.IsCancellationRequested)
                {
                    window.Errors.Record(Call, ex);
                }
            }
            finally
            {
                worker.EndUnaryBeat();
            }
        }

        try
        {
            await using var postgres = await RegistryScenarios.WatchPostgresAsync(context, ct);
            var lag = await window.RunAsync((worker, now) =>
            {
                if (!worker.TryBeginUnaryBeat())
                {
                    return false;
                }

                _ = BeatAsync(worker, now);
                return true;
            }, ct);
            var drained = await window.DrainAsync(ct);

            // The window beat every worker each second, so pausing the keep-alive for one flush interval is
            // safe and keeps its beats out of the PostgreSQL reading. (During the window it only beats workers
            // the schedule left waiting a whole interval, when the client falls behind.)
            context.Fleet.Pause();
            var memory = context.Target.ReadMemory();
            var writes = await RegistryScenarios.PostgresWritesAsync(postgres, ct);
            return window.Result(Mode, lag, streamsOpened: 0, streamsOpenSeconds: null, writes, memory, drained);
        }
        finally
        {
            context.Fleet.Resume();
        }
    }
}
