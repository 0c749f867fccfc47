using System.Diagnostics;
using Lifeline.AppHost.Output;
using Lifeline.AppHost.Processes;

namespace Lifeline.AppHost.Supervision;

/// <summary>
/// Runs one resource: starts it, probes its health, and restarts it when it exits with exponential backoff
/// (1 s, 2 s, 4 s … 30 s), back to 1 s once a run stayed healthy for <see cref="StableAfter"/>.
/// With <c>failFast</c> (infrastructure) an exit or a timeout before the first healthy probe is not retried:
/// <see cref="Ready"/> faults and the apphost stops with the reason.
/// </summary>
internal sealed class ResourceSupervisor
{
    public static readonly TimeSpan StableAfter = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StartupProbeInterval = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan ProbeInterval = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan StartupGrace = TimeSpan.FromSeconds(60);

    private readonly IManagedResource _resource;
    private readonly ResourceTable _table;
    private readonly ConsoleOutput _console;
    private readonly PidFiles _pidFiles;
    private readonly bool _failFast;
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _loop;
    private Process? _current;

    public ResourceSupervisor(IManagedResource resource, ResourceTable table, ConsoleOutput console, PidFiles pidFiles, bool failFast)
    {
        _resource = resource;
        _table = table;
        _console = console;
        _pidFiles = pidFiles;
        _failFast = failFast;
        table.Add(resource.Name, resource.Url);
    }

    public string Name => _resource.Name;

    public IManagedResource Resource => _resource;

    /// <summary>Completes at the first healthy (or degraded) probe; faults if a fail-fast resource never gets there.</summary>
    public Task Ready => _ready.Task;

    /// <summary>The most recent probe result, for messages about resources that are not healthy.</summary>
    public HealthResult LastHealth { get; private set; } = HealthResult.Unhealthy("not started");

    public void Start() => _loop ??= Task.Run(() => RunAsync(_stopping.Token));

    /// <summary>Stops supervising, then stops the process if it runs.</summary>
    public async Task StopAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }

        _ready.TrySetCanceled();
        if (_current is { HasExited: false } process)
        {
            _table.Update(Name, r => r with { State = ResourceState.Stopping });
            await _resource.StopAsync(process, message => _console.Info($"{Name}: {message}")).ConfigureAwait(false);
            _console.Info($"{Name} stopped (exit code {ExitCodeOf(process)})");
        }

        if (_loop is null)
        {
            // Never started: no news worth a table of its own; the final table shows it.
            _table.Update(Name, r => r with { State = ResourceState.Stopped }, print: false);
            return;
        }

        _pidFiles.Delete(Name);
        _table.Update(Name, r => r with { State = r.State == ResourceState.Failed ? ResourceState.Failed : ResourceState.Stopped, Pid = null });
    }

    private async Task RunAsync(CancellationToken stopping)
    {
        try
        {
            var failures = 0;
            while (!stopping.IsCancellationRequested)
            {
                var process = _resource.Start(line => _console.Line(Name, line));
                var previous = Interlocked.Exchange(ref _current, process);
                previous?.Dispose();
                _pidFiles.Write(Name, process);
                _table.Update(Name, r => r with { State = ResourceState.Starting, Pid = process.Id });

                var healthyFor = await WatchAsync(process, stopping).ConfigureAwait(false);
                if (stopping.IsCancellationRequested || _ready.Task.IsFaulted)
                {
                    return;
                }

                var exitCode = ExitCodeOf(process);
                if (_failFast && !_ready.Task.IsCompleted)
                {
                    Fail($"{Name} exited with code {exitCode} before it became healthy (its output is above).");
                    return;
                }

                if (healthyFor >= StableAfter)
                {
                    failures = 0;
                }

                var delay = TimeSpan.FromSeconds(Math.Min(MaxBackoff.TotalSeconds, Math.Pow(2, failures)));
                failures++;
                _table.Update(Name, r => r with { State = ResourceState.Restarting, Pid = null, Restarts = r.Restarts + 1 });
                _console.Info($"{Name} exited with code {exitCode}; restarting in {delay.TotalSeconds:0} s");
                await Task.Delay(delay, stopping).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            Fail($"{Name}: {ex.Message}");
        }
    }

    /// <summary>Probes until the process exits (returns how long it had been healthy) or supervision stops.</summary>
    private async Task<TimeSpan> WatchAsync(Process process, CancellationToken stopping)
    {
        var exited = process.WaitForExitAsync(CancellationToken.None);
        var sinceStart = Stopwatch.StartNew();
        Stopwatch? healthy = null;
        var everHealthy = false;
        while (!exited.IsCompleted && !stopping.IsCancellationRequested)
        {
            HealthResult health;
            using (var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping))
            {
                timeout.CancelAfter(ProbeTimeout);
                try
                {
                    health = await _resource.CheckHealthAsync(timeout.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!stopping.IsCancellationRequested)
                {
                    health = HealthResult.Unhealthy($"no answer within {ProbeTimeout.TotalSeconds:0} s");
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }

            if (exited.IsCompleted || stopping.IsCancellationRequested)
            {
                break;
            }

            LastHealth = health;
            ResourceState state;
            if (health.Status is HealthStatus.Healthy or HealthStatus.Degraded)
            {
                healthy ??= Stopwatch.StartNew();
                everHealthy = true;
                state = health.Status == HealthStatus.Healthy ? ResourceState.Healthy : ResourceState.Degraded;
                _ready.TrySetResult();
            }
            else
            {
                healthy = null;
                if (!everHealthy && sinceStart.Elapsed > StartupGrace && _failFast)
                {
                    Fail($"{Name} did not become healthy within {StartupGrace.TotalSeconds:0} s: {health.Description}");
                    return TimeSpan.Zero;
                }

                state = everHealthy || sinceStart.Elapsed > StartupGrace ? ResourceState.Unhealthy : ResourceState.Starting;
            }

            var pid = _resource.DisplayPid(process);
            _table.Update(Name, r => r with { State = state, Pid = pid });

            var interval = everHealthy ? ProbeInterval : StartupProbeInterval;
            await Task.WhenAny(exited, Task.Delay(interval, stopping)).ConfigureAwait(false);
        }

        return healthy?.Elapsed ?? TimeSpan.Zero;
    }

    private void Fail(string reason)
    {
        LastHealth = HealthResult.Unhealthy(reason);
        _table.Update(Name, r => r with { State = ResourceState.Failed });
        _ready.TrySetException(new AppHostException(reason));
    }

    private static string ExitCodeOf(Process process)
    {
        try
        {
            return process.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (InvalidOperationException)
        {
            return "?";
        }
    }
}
