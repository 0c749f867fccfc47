using System.Diagnostics;
using System.Globalization;
using Lifeline.AppHost.Processes;
using Lifeline.AppHost.Supervision;

namespace Lifeline.AppHost.Redis;

/// <summary>A redis-server on 127.0.0.1 keeping its data in <c>.lifeline/redis</c> with the append-only file on.</summary>
internal sealed class LocalRedis(string directory, int port, PidFiles pidFiles) : IManagedResource
{
    private string? _executable;

    public string Name => "redis";

    public string Url => $"redis://127.0.0.1:{port}";

    public IReadOnlyList<int> Ports => [port];

    /// <summary>StackExchange.Redis configuration, as services get it in <c>ConnectionStrings__redis</c>.</summary>
    public string ConnectionString => $"127.0.0.1:{port}";

    public Task StopLeftoverAsync(Action<string> report) => pidFiles.StopLeftoverAsync(Name, "redis-server", report);

    public Task PrepareAsync(Action<string> report, CancellationToken cancellationToken)
    {
        _executable = Environment.GetEnvironmentVariable("LIFELINE_REDIS_SERVER") is { Length: > 0 } configured
            ? configured
            : ProcessLauncher.FindExecutable("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server")
              ?? throw new AppHostException("redis-server was not found on PATH. Run build/setup.sh, or pass --redis with an existing server.");
        Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return Task.CompletedTask;
    }

    public Process Start(Action<string> onLine)
    {
        string[] arguments =
        [
            "--port", port.ToString(CultureInfo.InvariantCulture),
            "--bind", "127.0.0.1",
            "--dir", directory,
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--logfile", "",
        ];
        return ProcessLauncher.Start(
            ProcessLauncher.Describe(_executable ?? throw new InvalidOperationException("PrepareAsync first."), arguments, directory, ownSession: true),
            onLine);
    }

    public Task<HealthResult> CheckHealthAsync(CancellationToken cancellationToken) => RedisPing.PingAsync("127.0.0.1", port, cancellationToken);

    /// <summary>SIGTERM: redis-server flushes the append-only file and exits.</summary>
    public Task StopAsync(Process process, Action<string> report) => process.TerminateAsync(TimeSpan.FromSeconds(30), report);
}
