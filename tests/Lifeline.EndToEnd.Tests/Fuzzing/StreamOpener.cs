using Lifeline.EndToEnd.Tests.Suite;
using Lifeline.Registry.V1;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// A registered worker of the fuzzed tenant, kept alive by heartbeats, whose id and task type open the fuzzer's
/// dispatch streams (<see cref="Baseline.Opening"/>): the queue admits such a stream, so the message a case aims at a
/// later kind of request (complete, fail, capacity …) is judged on its own. No task of its type is ever enqueued, so
/// its streams lease nothing.
/// </summary>
internal sealed class StreamOpener : IAsyncDisposable
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(20);
    private readonly CancellationTokenSource _stop = new();
    private Task _beating = Task.CompletedTask;

    private StreamOpener(IReadOnlyDictionary<string, string> opening) => Opening = opening;

    /// <summary>The opening message's values: <c>worker_id</c> and <c>task_types</c>.</summary>
    public IReadOnlyDictionary<string, string> Opening { get; }

    public static async Task<StreamOpener> StartAsync(SuiteFixture suite, string workerKey, string run, CancellationToken cancellationToken)
    {
        var registry = suite.Registry(workerKey);
        var type = $"fuzz.opener.{run}";
        var registered = (await registry.RegisterWorkerAsync(
            new RegisterWorkerRequest { Name = $"fuzz-opener-{run}", Type = WorkerType.Standalone, Capabilities = { type } },
            deadline: DateTime.UtcNow + Deadline, cancellationToken: cancellationToken)).Worker;
        var opener = new StreamOpener(new Dictionary<string, string>(StringComparer.Ordinal) { ["worker_id"] = registered.Id, ["task_types"] = type });
        opener._beating = opener.BeatAsync(registry, registered.Id, registered.SessionEpoch);
        return opener;
    }

    private async Task BeatAsync(RegistryService.RegistryServiceClient registry, string workerId, long epoch)
    {
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(2), _stop.Token);
                await registry.HeartbeatAsync(new HeartbeatRequest { WorkerId = workerId, SessionEpoch = epoch, Status = WorkerStatus.Online },
                    deadline: DateTime.UtcNow + Deadline, cancellationToken: _stop.Token);
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested)
            {
                return;
            }
            catch (Grpc.Core.RpcException)
            {
                // A missed beat under load: the next one renews the worker.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _beating;
        _stop.Dispose();
    }
}
