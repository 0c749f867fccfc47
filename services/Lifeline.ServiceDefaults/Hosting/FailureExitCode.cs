using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Lifeline.ServiceDefaults.Hosting;

/// <summary>
/// A host stopped by a failed <see cref="BackgroundService"/> (the default <c>StopHost</c> behaviour) returns from
/// <c>RunAsync</c> normally, so the process would exit 0 and look like a clean stop to its supervisor. Once the
/// host has stopped, this sets <see cref="Environment.ExitCode"/> to 1 if any background service failed: its work
/// ended with an exception, or was cancelled before anyone asked the host to stop.
/// </summary>
public sealed partial class FailureExitCode(IHostApplicationLifetime lifetime, IServiceProvider services, ILogger<FailureExitCode> logger)
    : IHostedService
{
    /// <summary>The exit code of a service that stopped because background work failed.</summary>
    public const int ExitCode = 1;

    private IReadOnlyList<BackgroundService> _cancelledBeforeStopping = [];

    public Task StartAsync(CancellationToken cancellationToken)
    {
        lifetime.ApplicationStopping.Register(() => _cancelledBeforeStopping = [.. BackgroundServices().Where(s => s.ExecuteTask is { IsCanceled: true })]);
        lifetime.ApplicationStopped.Register(SetIfFailed);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>The background services whose work failed.</summary>
    public IReadOnlyList<BackgroundService> Failed() =>
        [.. BackgroundServices().Where(s => s.ExecuteTask is { IsFaulted: true } || _cancelledBeforeStopping.Contains(s))];

    private IEnumerable<BackgroundService> BackgroundServices() => services.GetServices<IHostedService>().OfType<BackgroundService>();

    private void SetIfFailed()
    {
        var failed = Failed();
        if (failed.Count > 0)
        {
            LogFailedStop(logger, string.Join(", ", failed.Select(s => s.GetType().Name)), ExitCode);
            Environment.ExitCode = ExitCode;
        }
    }

    [LoggerMessage(EventId = 9203, Level = LogLevel.Critical, Message = "The service stopped because background work failed ({Services}); exiting with code {ExitCode}")]
    private static partial void LogFailedStop(ILogger logger, string services, int exitCode);
}

/// <summary>Registration of <see cref="FailureExitCode"/>.</summary>
public static class FailureExitCodeExtensions
{
    /// <summary>Makes the process exit non-zero when the host stopped because a background service failed.</summary>
    public static IServiceCollection AddFailureExitCode(this IServiceCollection services)
    {
        services.AddHostedService<FailureExitCode>();
        return services;
    }
}
