using Grpc.Core;
using Lifeline.Registry.V1;
using Microsoft.Extensions.Logging;

namespace Lifeline.Worker.Internal;

/// <summary>
/// The worker's heartbeat: one beat every heartbeat interval over one <c>HeartbeatStream</c>, whose answers carry
/// commands and on which the registry pushes commands as soon as they are issued. A stream that breaks, or leaves a beat
/// unanswered for the call timeout, is opened again after a backoff; a stream the gateway refuses outright (e.g.
/// <c>UNIMPLEMENTED</c>) is given up for unary <c>Heartbeat</c> calls, as is the stream when
/// <see cref="LifelineWorkerOptions.UseHeartbeatStream"/> is false. A beat refused as <c>STALE_SESSION</c> means another
/// process registered the same name: the worker ends. Every answer (or transient failure) goes to the connection
/// monitor, like any other call's.
/// </summary>
internal sealed partial class Heartbeats(
    WorkerConnection connection,
    ConnectionMonitor monitor,
    LifelineWorkerOptions options,
    RetryPolicy policy,
    Func<HeartbeatRequest> nextBeat,
    Action<WorkerCommand> onCommand,
    Action onSuperseded,
    ILogger logger)
{
    private volatile TaskCompletionSource _nudge = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _beatSent; // when the beat now waiting for its answer went out (monitor timestamp); 0: none

    /// <summary>The interval between beats; the registry's answer at registration.</summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Whether beats go over the stream (false once it was given up).</summary>
    public bool Streaming { get; private set; } = options.UseHeartbeatStream;

    private long? BeatSent => Interlocked.Read(ref _beatSent) is var sent && sent != 0 ? sent : null;

    /// <summary>
    /// Beats now rather than at the next interval (or reopens a broken stream now): the queue said the worker is
    /// offline, its heartbeat lapsed (e.g. during a network outage), and one beat brings it back.
    /// </summary>
    public void BeatNow() => _nudge.TrySetResult();

    /// <summary>Beats until cancelled or superseded.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (Streaming)
                {
                    await StreamAsync(() => failures = 0, cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    await BeatOnceAsync(cancellationToken).ConfigureAwait(false);
                    failures = 0;
                    await WaitAsync(Interval, null, cancellationToken).ConfigureAwait(false);
                    continue;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException ex) when (cancellationToken.IsCancellationRequested && ex.StatusCode == StatusCode.Cancelled)
            {
                return;
            }
            catch (RpcException ex) when (RpcErrors.Reason(ex) == "STALE_SESSION")
            {
                monitor.ReportSuccess("the registry answered");
                LogSessionSuperseded();
                onSuperseded();
                return;
            }
            catch (RpcException ex) when (Streaming && !RpcErrors.IsTransient(ex) && ex.StatusCode is StatusCode.Unimplemented or StatusCode.PermissionDenied or StatusCode.Internal or StatusCode.Unknown)
            {
                // The gateway (or something before it) will not carry the stream: beat the unary way from now on.
                monitor.ReportSuccess("the gateway answered");
                LogStreamGivenUp(RpcErrors.Describe(ex));
                Streaming = false;
                continue;
            }
            catch (RpcException ex)
            {
                if (RpcErrors.IsTransient(ex))
                {
                    monitor.ReportTransientFailure($"{RpcErrors.Describe(ex)} (heartbeat)", BeatSent);
                }
                else
                {
                    monitor.ReportSuccess("the registry answered");
                }

                LogHeartbeatFailed(RpcErrors.Describe(ex));
            }

            // Broken stream or failed beat: try again after a backoff, at most one interval.
            failures++;
            var wait = policy.Jittered(Math.Min(failures - 1, 30), Random.Shared.NextDouble());
            await WaitAsync(wait < Interval ? wait : Interval, null, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Waits <paramref name="wait"/>, or less when nudged (<see cref="BeatNow"/>), the stream ends, or the worker stops.</summary>
    private async Task WaitAsync(TimeSpan wait, Task? streamEnded, CancellationToken cancellationToken)
    {
        var nudge = _nudge;
        var waited = await Task.WhenAny(Task.Delay(wait, cancellationToken), nudge.Task, streamEnded ?? nudge.Task)
            .ConfigureAwait(false);
        if (waited == nudge.Task)
        {
            _nudge = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
    }

    /// <summary>
    /// One unary beat as an offline probe (when no task is held): its answer, or its transient failure, goes to the
    /// connection monitor; any other refusal counts as an answer.
    /// </summary>
    public async Task ProbeAsync(CancellationToken cancellationToken)
    {
        try
        {
            await BeatOnceAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
        {
            if (RpcErrors.IsTransient(ex))
            {
                monitor.ReportTransientFailure($"{RpcErrors.Describe(ex)} (probe: heartbeat)", BeatSent);
            }
            else
            {
                monitor.ReportSuccess($"probe: heartbeat answered ({ex.StatusCode})");
            }
        }
    }

    private async Task BeatOnceAsync(CancellationToken cancellationToken)
    {
        Interlocked.Exchange(ref _beatSent, monitor.Timestamp);
        var response = await connection.Registry.HeartbeatAsync(nextBeat(), connection.CallOptions(cancellationToken)).ConfigureAwait(false);
        monitor.ReportSuccess("heartbeat answered");
        foreach (var command in response.Commands)
        {
            onCommand(command);
        }
    }

    /// <summary>One stream, until it breaks (throws) or the worker stops. <paramref name="answered"/> runs on each answered beat.</summary>
    private async Task StreamAsync(Action answered, CancellationToken cancellationToken)
    {
        using var stream = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var call = connection.Registry.HeartbeatStream(new CallOptions(cancellationToken: stream.Token));
        using var acks = new SemaphoreSlim(0);
        var reader = ReadAsync(call, acks, stream.Token);
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                try
                {
                    Interlocked.Exchange(ref _beatSent, monitor.Timestamp);
                    await call.RequestStream.WriteAsync(new HeartbeatStreamRequest { Beat = nextBeat() }, cancellationToken).ConfigureAwait(false);
                }
                catch (InvalidOperationException ex)
                {
                    // The call ended before the write: its status, once read, says why.
                    if (await Task.WhenAny(reader, Task.Delay(options.CallTimeout, cancellationToken)).ConfigureAwait(false) == reader)
                    {
                        await reader.ConfigureAwait(false);
                    }

                    throw new RpcException(new Status(StatusCode.Unavailable, $"the heartbeat stream ended: {ex.Message}"));
                }

                var ack = acks.WaitAsync(options.CallTimeout, cancellationToken);
                if (await Task.WhenAny(ack, reader).ConfigureAwait(false) == reader)
                {
                    await reader.ConfigureAwait(false); // throws what broke the stream
                    throw new RpcException(new Status(StatusCode.Unavailable, "the heartbeat stream ended"));
                }

                if (!await ack.ConfigureAwait(false))
                {
                    throw new RpcException(new Status(StatusCode.DeadlineExceeded, $"no answer to a heartbeat within {options.CallTimeout}"));
                }

                answered();
                monitor.ReportSuccess("heartbeat answered");
                Interlocked.Exchange(ref _beatSent, 0); // a stream that breaks while idle failed just now, not when the last beat went out
                await WaitAsync(Interval, reader, cancellationToken).ConfigureAwait(false);
                if (reader.IsCompleted)
                {
                    await reader.ConfigureAwait(false);
                    throw new RpcException(new Status(StatusCode.Unavailable, "the heartbeat stream ended"));
                }
            }
        }
        finally
        {
            await stream.CancelAsync().ConfigureAwait(false);
            try
            {
                await reader.ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is RpcException or OperationCanceledException or ObjectDisposedException)
            {
                // The stream is over either way.
            }
        }
    }

    private async Task ReadAsync(AsyncDuplexStreamingCall<HeartbeatStreamRequest, HeartbeatStreamResponse> call, SemaphoreSlim acks, CancellationToken cancellationToken)
    {
        await foreach (var message in call.ResponseStream.ReadAllAsync(cancellationToken).ConfigureAwait(false))
        {
            switch (message.MessageCase)
            {
                case HeartbeatStreamResponse.MessageOneofCase.Ack:
                    foreach (var command in message.Ack.Commands)
                    {
                        onCommand(command);
                    }

                    acks.Release();
                    break;
                case HeartbeatStreamResponse.MessageOneofCase.Command:
                    onCommand(message.Command);
                    break;
            }
        }
    }

    [LoggerMessage(7113, LogLevel.Warning, "Heartbeat failed: {Error}")]
    private partial void LogHeartbeatFailed(string error);

    [LoggerMessage(7114, LogLevel.Error, "Heartbeat refused: this worker's name was registered again by another process, which owns it now")]
    private partial void LogSessionSuperseded();

    [LoggerMessage(7160, LogLevel.Warning, "The heartbeat stream cannot be used ({Error}); heartbeating with unary calls")]
    private partial void LogStreamGivenUp(string error);
}
