using System.Diagnostics;

namespace Lifeline.AppHost.Supervision;

internal enum HealthStatus
{
    Unhealthy,
    Degraded,
    Healthy,
}

/// <param name="Description">Why it is not healthy, for messages; null when healthy.</param>
internal readonly record struct HealthResult(HealthStatus Status, string? Description = null)
{
    public static HealthResult Healthy { get; } = new(HealthStatus.Healthy);

    public static HealthResult Unhealthy(string description) => new(HealthStatus.Unhealthy, description);
}

/// <summary>A process the apphost runs and a <see cref="ResourceSupervisor"/> keeps alive.</summary>
internal interface IManagedResource
{
    string Name { get; }

    /// <summary>What the table shows, e.g. <c>http://127.0.0.1:5101</c>.</summary>
    string Url { get; }

    /// <summary>Ports it will listen on, checked to be free before anything starts.</summary>
    IReadOnlyList<int> Ports { get; }

    /// <summary>Stops what an earlier apphost that was killed outright left running.</summary>
    Task StopLeftoverAsync(Action<string> report);

    /// <summary>One-off work before the first start (initdb, directories …).</summary>
    Task PrepareAsync(Action<string> report, CancellationToken cancellationToken);

    /// <summary>Starts the process; each output line goes to <paramref name="onLine"/>.</summary>
    Process Start(Action<string> onLine);

    Task<HealthResult> CheckHealthAsync(CancellationToken cancellationToken);

    /// <summary>The pid the table shows (PostgreSQL's postmaster rather than the runuser wrapping it).</summary>
    int DisplayPid(Process process) => process.Id;

    /// <summary>Stops the process gracefully, killing it if it does not go in time.</summary>
    Task StopAsync(Process process, Action<string> report);
}
