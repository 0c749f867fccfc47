using System.Diagnostics;
using Lifeline.AppHost.Model;
using Lifeline.AppHost.Processes;
using Lifeline.AppHost.Supervision;

namespace Lifeline.AppHost.Services;

/// <summary>One .NET service, run as <c>dotnet &lt;dll&gt;</c> from its build output with the environment Aspire would give it.</summary>
internal sealed class ServiceProcess(
    ServiceDefinition definition, string assemblyPath, IReadOnlyDictionary<string, string?> environment, HealthProbe probe, PidFiles pidFiles)
    : IManagedResource
{
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(30);

    public string Name => definition.Name;

    public string Url => string.Join(' ', definition.Endpoints);

    public IReadOnlyList<int> Ports => [.. definition.Endpoints.Select(e => e.Port)];

    public Task StopLeftoverAsync(Action<string> report) => pidFiles.StopLeftoverAsync(Name, Path.GetFileName(assemblyPath), report);

    public Task PrepareAsync(Action<string> report, CancellationToken cancellationToken) => Task.CompletedTask;

    public Process Start(Action<string> onLine)
    {
        // The content root (appsettings.json) is the working directory: the build output.
        var startInfo = ProcessLauncher.Describe(DotnetHost(), [assemblyPath], Path.GetDirectoryName(assemblyPath)!, ownSession: true);
        foreach (var (name, value) in environment)
        {
            if (value is null)
            {
                startInfo.Environment.Remove(name);
            }
            else
            {
                startInfo.Environment[name] = value;
            }
        }

        return ProcessLauncher.Start(startInfo, onLine);
    }

    public Task<HealthResult> CheckHealthAsync(CancellationToken cancellationToken) => probe.CheckAsync(definition.HealthUri, cancellationToken);

    /// <summary>SIGTERM: the host drains requests and stops its background services.</summary>
    public Task StopAsync(Process process, Action<string> report) => process.TerminateAsync(StopGrace, report);

    private static string DotnetHost()
    {
        var processPath = Environment.ProcessPath;
        if (processPath is not null && Path.GetFileNameWithoutExtension(processPath) == "dotnet")
        {
            return processPath;
        }

        return Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } hostPath ? hostPath : "dotnet";
    }
}
