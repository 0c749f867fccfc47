using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Lifeline.AppHost.Supervision;

/// <summary>Marks a resource the AppHost starts again when its process dies on its own.</summary>
internal sealed class RestartOnCrashAnnotation : IResourceAnnotation;

/// <summary>
/// Restarts a crashed resource. DCP does not: a process that exits (a SIGKILL, an unhandled exception) stays
/// "Exited" until someone presses Start in the dashboard. This watches every resource's state and, when one marked
/// with <see cref="RestartOnCrashAnnotation"/> goes straight from running to a terminal state with an exit code other
/// than 0 while the AppHost is not shutting down, runs the dashboard's own Start command for it after a back-off:
/// 1 s, doubling per crash to 30 s, reset after 60 s of running.
/// </summary>
internal sealed partial class CrashRestarter(
    DistributedApplicationModel model,
    ResourceNotificationService notifications,
    ResourceCommandService commands,
    ResourceLoggerService resourceLogs,
    IHostApplicationLifetime lifetime,
    ILogger<CrashRestarter> logger) : BackgroundService
{
    private static readonly TimeSpan FirstDelay = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan StableAfter = TimeSpan.FromSeconds(60);

    private readonly Dictionary<string, Tracked> _tracked = new(StringComparer.Ordinal);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var supervised = model.Resources.Where(r => r.Annotations.OfType<RestartOnCrashAnnotation>().Any()).Select(r => r.Name).ToHashSet(StringComparer.Ordinal);
        try
        {
            await foreach (var change in notifications.WatchAsync(stoppingToken).ConfigureAwait(false))
            {
                if (!supervised.Contains(change.Resource.Name))
                {
                    continue;
                }

                var state = change.Snapshot.State?.Text;
                var tracked = _tracked.TryGetValue(change.ResourceId, out var known) ? known : new Tracked();
                _tracked[change.ResourceId] = tracked with { State = state, RunningSince = state == KnownResourceStates.Running && tracked.State != KnownResourceStates.Running ? DateTime.UtcNow : tracked.RunningSince };
                // A process stopped on purpose (the dashboard's Stop, the AppHost shutting down) exits 0 after SIGTERM; a crash
                // (SIGKILL 137, an unhandled exception, a failed host exits 1) does not.
                if (state is null || !KnownResourceStates.TerminalStates.Contains(state) || tracked.State != KnownResourceStates.Running ||
                    change.Snapshot.ExitCode == 0 || lifetime.ApplicationStopping.IsCancellationRequested)
                {
                    continue;
                }

                var delay = DateTime.UtcNow - tracked.RunningSince > StableAfter
                    ? FirstDelay
                    : TimeSpan.FromTicks(Math.Min(MaxDelay.Ticks, Math.Max(FirstDelay.Ticks, tracked.LastDelay.Ticks * 2)));
                _tracked[change.ResourceId] = _tracked[change.ResourceId] with { LastDelay = delay };
                var exitCode = change.Snapshot.ExitCode;
                LogCrashed(logger, change.Resource.Name, exitCode, delay.TotalSeconds);
                resourceLogs.GetLogger(change.ResourceId).LogWarning(
                    "{Resource} exited with code {ExitCode}; restarting in {Delay} s", change.Resource.Name, exitCode, delay.TotalSeconds);
                _ = RestartAsync(change.ResourceId, delay, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // The AppHost is stopping.
        }
    }

    private async Task RestartAsync(string resourceId, TimeSpan delay, CancellationToken stoppingToken)
    {
        try
        {
            await Task.Delay(delay, stoppingToken).ConfigureAwait(false);
            if (lifetime.ApplicationStopping.IsCancellationRequested)
            {
                return;
            }

            var result = await commands.ExecuteCommandAsync(resourceId, KnownResourceCommands.StartCommand, stoppingToken).ConfigureAwait(false);
            if (!result.Success)
            {
                LogRestartFailed(logger, resourceId, result.Message);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: nothing to restart.
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
        {
            LogRestartFailed(logger, resourceId, ex.Message);
        }
    }

    [LoggerMessage(EventId = 1, Level = LogLevel.Warning, Message = "{Resource} exited with code {ExitCode}; restarting in {DelaySeconds} s")]
    private static partial void LogCrashed(ILogger logger, string resource, int? exitCode, double delaySeconds);

    [LoggerMessage(EventId = 2, Level = LogLevel.Error, Message = "Restarting {Resource} failed: {Reason}")]
    private static partial void LogRestartFailed(ILogger logger, string resource, string? reason);

    private sealed record Tracked
    {
        public string? State { get; init; }

        public DateTime RunningSince { get; init; } = DateTime.UtcNow;

        public TimeSpan LastDelay { get; init; }
    }
}
