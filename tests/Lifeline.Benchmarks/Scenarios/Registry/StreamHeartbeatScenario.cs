using System.Collections.Concurrent;
using System.Diagnostics;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>
/// Streamed heartbeats: every worker of the fleet opens one HeartbeatStream (untimed; all are open before
/// the window starts), then beats on it once per second for the window, each beat's ack timed. Kestrel
/// allows 100 streams per HTTP/2 connection, so the channel spreads them over about workers ÷ 100 connections.
/// </summary>
internal static class StreamHeartbeatScenario
{
    public const string Call = "HeartbeatStream";
    public const string Mode = "HeartbeatStream";
    private static readonly TimeSpan FirstAckTimeout = TimeSpan.FromSeconds(30);

    public static async Task<HeartbeatResult> RunAsync(RegistryContext context, CancellationToken ct)
    {
        var registered = context.Fleet.Workers.Where(w => w.Registered).ToArray();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var streams = new ConcurrentBag<BeatStream>();
        var errors = new CallErrors();
        HeartbeatWindow? window = null;

        // Open every stream with a first beat and wait for its ack; the keep-alive covers workers not yet open.
        var opening = Stopwatch.GetTimestamp();
        await Parallel.ForEachAsync(registered, new ParallelOptions { MaxDegreeOfParallelism = context.Profile.StreamOpenConcurrency, CancellationToken = ct },
            async (worker, token) =>
            {
                var stream = new BeatStream(context.Connection, worker, () => window, errors, stop.Token);
                var now = Stopwatch.GetTimestamp();
                if (!stream.TrySend(now))
                {
                    return;
                }

                worker.MarkBeat(now);
                try
                {
                    await stream.FirstAck.WaitAsync(FirstAckTimeout, token);
                    streams.Add(stream);
                }
                catch (TimeoutException)
                {
                    errors.Record($"{Call}: no ack to the first beat within {FirstAckTimeout.TotalSeconds:0} s");
                    await stream.CloseAsync();
                }
                catch (Exception ex) when (ex is RpcException or InvalidOperationException)
                {
                    // Recorded by the stream.
                    await stream.CloseAsync();
                }
            });
        var openSeconds = ScenarioContext.SecondsSince(opening, Stopwatch.GetTimestamp());
        var open = streams.ToArray();
        var byWorker = open.ToDictionary(s => s.Worker);

        window = new HeartbeatWindow(
            open.Select(s => s.Worker).ToArray(), context.Profile.HeartbeatLeadIn, context.Profile.StreamWindow, context.Target.CpuSources, errors);

        try
        {
            await using var postgres = await RegistryScenarios.WatchPostgresAsync(context, ct);
            var lag = await window.RunAsync((worker, now) => byWorker[worker].TrySend(now), ct);
            var drained = await window.DrainAsync(ct);

            // The window beat every worker each second, so pausing the keep-alive for one flush interval is
            // safe and keeps its beats out of the PostgreSQL reading. (During the window it only beats workers
            // the schedule left waiting a whole interval, when the client falls behind.)
            context.Fleet.Pause();
            var memory = context.Target.ReadMemory(); // every stream still open
            var writes = await RegistryScenarios.PostgresWritesAsync(postgres, ct);
            context.Fleet.Resume();
            await Task.WhenAll(open.Select(s => s.CloseAsync()));
            return window.Result(Mode, lag, open.Length, openSeconds, writes, memory, drained);
        }
        finally
        {
            context.Fleet.Resume();
            await stop.CancelAsync();
        }
    }

    /// <summary>One worker's heartbeat stream: beats written in order, acks matched to them in order.</summary>
    private sealed class BeatStream
    {
        private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(30);
        private readonly AsyncDuplexStreamingCall<HeartbeatStreamRequest, HeartbeatStreamResponse> _call;
        private readonly ConcurrentQueue<long> _sentAt = new();
        private readonly Func<HeartbeatWindow?> _window;
        private readonly CallErrors _errors;
        private readonly CancellationToken _ct;
        private readonly HeartbeatStreamRequest _beat;
        private readonly TaskCompletionSource _firstAck = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Task _reader;
        private Task _write = Task.CompletedTask;
        private volatile bool _closing;

        public BeatStream(RegistryConnection connection, FleetWorker worker, Func<HeartbeatWindow?> window, CallErrors errors, CancellationToken ct)
        {
            Worker = worker;
            _window = window;
            _errors = errors;
            _ct = ct;
            _beat = new HeartbeatStreamRequest { Beat = worker.Beat };
            _call = connection.Registry.HeartbeatStream(RegistryConnection.Stream(ct));
            _reader = Task.Run(ReadAsync, CancellationToken.None);
        }

        public FleetWorker Worker { get; }

        public Task FirstAck => _firstAck.Task;

        /// <summary>Writes a beat unless the previous write is still pending (then false: the beat is skipped).</summary>
        public bool TrySend(long now)
        {
            if (!_write.IsCompleted || _closing)
            {
                return false;
            }

            _sentAt.Enqueue(now);
            _write = WriteAsync();
            return true;
        }

        private async Task WriteAsync()
        {
            try
            {
                await _call.RequestStream.WriteAsync(_beat, _ct);
            }
            catch (Exception ex) when (ex is RpcException or InvalidOperationException or OperationCanceledException)
            {
                // The unanswered beat counts as failed when the reader ends with the call.
                _errors.Record($"{Call} write: {(ex is RpcException rpc ? $"{rpc.StatusCode} {rpc.Status.Detail}" : ex.Message)}");
            }
        }

        private async Task ReadAsync()
        {
            try
            {
                await foreach (var message in _call.ResponseStream.ReadAllAsync(_ct))
                {
                    if (message.MessageCase != HeartbeatStreamResponse.MessageOneofCase.Ack)
                    {
                        continue; // a pushed command: none are issued in this benchmark
                    }

                    if (!_sentAt.TryDequeue(out var sentAt))
                    {
                        _errors.Record($"{Call}: an ack without a beat");
                        continue;
                    }

                    _firstAck.TrySetResult();
                    _window()?.Answer(sentAt);
                    if (message.Ack.Status != WorkerStatus.Online)
                    {
                        _errors.Record($"{Call} ack with status {message.Ack.Status}");
                    }
                }

                if (!_closing)
                {
                    _errors.Record($"{Call}: the server ended the stream");
                }
            }
            catch (Exception ex) when (ex is RpcException or OperationCanceledException)
            {
                if (!_ct.IsCancellationRequested)
                {
                    _errors.Record($"{Call} read: {(ex is RpcException rpc ? $"{rpc.StatusCode} {rpc.Status.Detail}" : ex.Message)}");
                }
            }
            finally
            {
                _firstAck.TrySetException(new InvalidOperationException("the stream ended before its first ack"));
                while (_sentAt.TryDequeue(out var unanswered))
                {
                    _window()?.Fail(unanswered);
                }
            }
        }

        /// <summary>Ends the request stream and waits for the server to end the call.</summary>
        public async Task CloseAsync()
        {
            _closing = true;
            try
            {
                await _write;
                await _call.RequestStream.CompleteAsync();
                await _reader.WaitAsync(CloseTimeout);
            }
            catch (Exception ex) when (ex is RpcException or InvalidOperationException or TimeoutException)
            {
                _errors.Record($"{Call} close: {ex.Message}");
            }
            finally
            {
                _call.Dispose();
            }
        }
    }
}
