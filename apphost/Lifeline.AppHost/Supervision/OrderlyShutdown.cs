using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Lifeline.AppHost.Supervision;

/// <summary>Where a resource stands in the shutdown order: lower stops first.</summary>
internal sealed record ShutdownOrderAnnotation(int Stage) : IResourceAnnotation;

/// <summary>
/// On Ctrl-C / SIGTERM, stops the suite in order before Aspire tears down the rest: the gateway (no new calls), then
/// the services, then Redis, then PostgreSQL (a fast shutdown with a checkpoint). Left alone, DCP stops everything at
/// once after the AppHost has exited, and PostgreSQL may be killed while services still write. Each stage waits for
/// its resources to reach a terminal state, at most <see cref="StageTimeout"/>.
/// </summary>
internal sealed partial class OrderlyShutdown(
    DistributedApplicationModel model,
    ResourceNotificationService notifications,
    ResourceCommandService commands,
    ILogger<OrderlyShutdown> logger) : IHostedService
{
    private static readonly TimeSpan StageTimeout = TimeSpan.FromSeconds(20);

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var stages = model.Resources
            .Select(r => (Resource: r, Order: r.Annotations.OfType<ShutdownOrderAnnotation>().FirstOrDefault()))
            .Where(r => r.Order is not null)
            .GroupBy(r => r.Order!.Stage, r => r.Resource)
            .OrderBy(g => g.Key);
        foreach (var stage in stages)
        {
            await Task.WhenAll(stage.Select(resource => StopAsync(resource, cancellationToken))).ConfigureAwait(false);
        }
    }

    private async Task StopAsync(IResource resource, CancellationToken cancellationToken)
    {
        if (!notifications.TryGetCurrentState(resource.Name, out var current) ||
            current.Snapshot.State?.Text is not { } state || KnownResourceStates.TerminalStates.Contains(state) || state == KnownResourceStates.NotStarted)
        {
            return;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(StageTimeout);
        try
        {
            var result = await commands.ExecuteCommandAsync(resource, KnownResourceCommands.StopCommand, timeout.Token).ConfigureAwait(false);
            if (!result.Success)
            {
                LogStopFailed(logger, resource.Name, result.Message);
                return;
            }

            await notifications.WaitForResourceAsync(resource.Name, KnownResourceStates.TerminalStates, timeout.Token).ConfigureAwait(false);
            LogStopped(logger, resource.Name);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            LogStopFailed(logger, resource.Name, $"not stopped within {StageTimeout.TotalSeconds:0} s");
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
        {
            LogStopFailed(logger, resource.Name, ex.Message);
        }
    }

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "Stopped {Resource}")]
    private static partial void LogStopped(ILogger logger, string resource);

    [LoggerMessage(EventId = 11, Level = LogLevel.Warning, Message = "Stopping {Resource} in order failed ({Reason}); Aspire stops it with the rest")]
    private static partial void LogStopFailed(ILogger logger, string resource, string? reason);
}
