using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Lifeline.Processes;
using Lifeline.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lifeline.EndToEnd.Tests.Suite;

/// <summary>
/// The whole suite as a user runs it: the Aspire AppHost (apphost/Lifeline.AppHost) started in this process with
/// <c>Aspire.Hosting.Testing</c>, with its own temporary <c>--data-dir</c>, free PostgreSQL, Redis, gateway and
/// ports (the services always get free ports), and the dashboard on (on a free port with a token of its own,
/// see <see cref="DashboardLogin"/>) for the browser test. Ready once Aspire reports the gateway healthy (which waits for every service, which wait for
/// PostgreSQL and Redis); then <c>credentials.json</c> is read. Every resource's console output is copied, prefixed
/// with its name, to <see cref="ApphostLog"/>. Stopped at the end (the AppHost stops the gateway, the services, Redis,
/// then PostgreSQL); DCP removes whatever is left if this process dies first.
/// </summary>
/// <remarks>
/// Startup costs 10–60 s (more on a loaded machine), so test classes share one suite (one xunit collection) and run one
/// after another.
/// </remarks>
public sealed class SuiteFixture : IAsyncLifetime
{
    private static readonly TimeSpan StartupTimeout = TimeSpan.FromMinutes(4);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(90);

    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private readonly CancellationTokenSource _logCopy = new();
    private readonly ConcurrentQueue<Task> _logTasks = new();
    private readonly object _logLock = new();
    private DistributedApplication? _app;

    public SuiteFixture()
    {
        RepositoryRoot = BuiltAssemblies.RepositoryRoot;
        WorkDirectory = Path.Combine(Path.GetTempPath(), $"lifeline-e2e-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40]);
        DataDirectory = Path.Combine(WorkDirectory, "data");
        ApphostLog = Path.Combine(WorkDirectory, "apphost.log");
        PostgresPort = FreePort.Next();
        RedisPort = FreePort.Next();
        GatewayGrpcPort = FreePort.Next();
        GatewayRestPort = FreePort.Next();
    }

    public string RepositoryRoot { get; }

    /// <summary>Temporary directory holding the data directory and the resources' log; deleted at the end.</summary>
    public string WorkDirectory { get; }

    public string DataDirectory { get; }

    /// <summary>Every resource's console output, each line prefixed with <c>[name]</c>.</summary>
    public string ApphostLog { get; }

    public int PostgresPort { get; }

    public int RedisPort { get; }

    public int GatewayGrpcPort { get; }

    public int GatewayRestPort { get; }

    /// <summary>
    /// The dashboard's login link (with its browser token), as the AppHost prints it. Aspire.Hosting.Testing gives the
    /// dashboard a free port and a token of its own: the address is the dashboard resource's allocated endpoint, the
    /// token the AppHost's configuration.
    /// </summary>
    public Uri DashboardLogin
    {
        get
        {
            var dashboard = App.Services.GetRequiredService<DistributedApplicationModel>().Resources.OfType<IResourceWithEndpoints>()
                .FirstOrDefault(r => r.Name == "aspire-dashboard") ?? throw new InvalidOperationException("The AppHost runs no dashboard.");
            var url = dashboard.Annotations.OfType<EndpointAnnotation>()
                .Select(e => e.AllocatedEndpoint?.UriString)
                .FirstOrDefault(u => u is not null && u.StartsWith("http:", StringComparison.Ordinal))
                ?? throw new InvalidOperationException("The dashboard has no allocated http endpoint.");
            var token = App.Services.GetRequiredService<IConfiguration>()["AppHost:BrowserToken"];
            return new Uri(token is null ? url : $"{url.TrimEnd('/')}/login?t={token}");
        }
    }

    /// <summary>The running AppHost (its resources, notifications and commands).</summary>
    public DistributedApplication App => _app ?? throw new InvalidOperationException("The suite is not started.");

    public SuiteCredentials Credentials { get; private set; } = null!;

    public string CredentialsFile => Path.Combine(DataDirectory, "credentials.json");

    /// <summary>
    /// Mints identities with this suite's key (from the AppHost's <c>secrets.json</c>), for tests that call a
    /// service process directly as another service would.
    /// </summary>
    public Lifeline.ServiceDefaults.Security.IdentityTokens Identity => _identity ??= new(Microsoft.Extensions.Options.Options.Create(
        new Lifeline.ServiceDefaults.Security.IdentityOptions
        {
            SigningKey = JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDirectory, "secrets.json")))
                .RootElement.GetProperty("identitySigningKey").GetString()!,
        }));

    private Lifeline.ServiceDefaults.Security.IdentityTokens? _identity;

    /// <summary>The gateway's gRPC address, as credentials.json gives it.</summary>
    public Uri GatewayGrpc => Credentials.GatewayGrpc;

    /// <summary>The gateway's REST (HTTP/1.1) address, as credentials.json gives it.</summary>
    public Uri GatewayRest => Credentials.GatewayRest;

    /// <summary>A service's own gRPC address (a free port Aspire gave it), to call it directly, bypassing the gateway.</summary>
    public Uri ServiceAddress(string service) => App.GetEndpoint(service, "grpc");

    /// <summary>A service's Prometheus address (<c>/metrics</c> over HTTP/1.1 on a loopback port the AppHost gave it).</summary>
    public Uri MetricsAddress(string service) => new(App.GetEndpoint(service, "metrics"), "/metrics");

    public async Task InitializeAsync()
    {
        try
        {
            await StartAsync();
        }
        catch
        {
            await StopAsync();
            throw;
        }
    }

    public async Task DisposeAsync()
    {
        await StopAsync();
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }

        _http.Dispose();
        _logCopy.Dispose();
    }

    /// <summary>A gRPC channel to the gateway sending the key named <paramref name="keyName"/>; none when null.</summary>
    public CallInvoker Grpc(string? keyName)
    {
        var channel = _channels.GetOrAdd("", _ => GrpcChannel.ForAddress(GatewayGrpc));
        if (keyName is null)
        {
            return channel.WithDeadlines();
        }

        return GrpcWithBearer(Credentials.Key(keyName).Key);
    }

    /// <summary>A gRPC channel to the gateway sending <c>authorization: Bearer <paramref name="token"/></c>, whatever it is.</summary>
    public CallInvoker GrpcWithBearer(string token) =>
        _channels.GetOrAdd("", _ => GrpcChannel.ForAddress(GatewayGrpc)).WithDeadlines().Intercept(metadata =>
        {
            metadata.Add("authorization", $"Bearer {token}");
            return metadata;
        });

    /// <summary>A REST request to the gateway's HTTP/1.1 port, with the key named <paramref name="keyName"/> when given.</summary>
    public Task<HttpResponseMessage> RestAsync(HttpMethod method, string path, string? keyName, string? jsonBody = null) =>
        RestWithBearerAsync(method, path, keyName is null ? null : Credentials.Key(keyName).Key, jsonBody);

    /// <summary>A REST request to the gateway's HTTP/1.1 port, with <c>authorization: Bearer <paramref name="token"/></c> when given.</summary>
    public async Task<HttpResponseMessage> RestWithBearerAsync(HttpMethod method, string path, string? token, string? jsonBody = null)
    {
        using var request = new HttpRequestMessage(method, new Uri(GatewayRest, path)) { Version = HttpVersion.Version11 };
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        if (jsonBody is not null)
        {
            request.Content = new StringContent(jsonBody, System.Text.Encoding.UTF8, "application/json");
        }

        return await _http.SendAsync(request);
    }

    /// <summary>Status code of the gateway's <c>/health</c>, or null when it does not answer.</summary>
    public async Task<HttpStatusCode?> HealthAsync()
    {
        try
        {
            using var response = await _http.GetAsync(new Uri($"http://127.0.0.1:{GatewayRestPort}/health"));
            return response.StatusCode;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }

    /// <summary>Waits until the gateway's <c>/health</c> answers 200, or throws with the resources' log.</summary>
    public async Task WaitUntilHealthyAsync(TimeSpan timeout)
    {
        var stopwatch = Stopwatch.StartNew();
        HttpStatusCode? last = null;
        while (stopwatch.Elapsed < timeout)
        {
            last = await HealthAsync();
            if (last == HttpStatusCode.OK)
            {
                return;
            }

            await Task.Delay(500);
        }

        throw new TimeoutException(
            $"The gateway's /health was not 200 within {timeout.TotalSeconds:0} s (last: {last?.ToString() ?? "no answer"}).\n{ResourceStates()}\n{ApphostLogTail()}");
    }

    /// <summary>
    /// The pid of a resource's own process, if it is alive: what DCP started (<c>executable.pid</c>), followed past the
    /// <c>dotnet run</c> and <c>bash</c> wrappers to the service, postgres or redis-server process itself.
    /// </summary>
    public int? ResourcePid(string name) => ResourceProcess(name)?.Pid;

    /// <summary>Each resource's process as "pid start-time" (a restart changes it), for those running now.</summary>
    public IReadOnlyDictionary<string, string> ResourceProcesses() =>
        App.Services.GetRequiredService<DistributedApplicationModel>().Resources
            .Select(r => (r.Name, Process: ResourceProcess(r.Name)))
            .Where(r => r.Process is not null)
            .ToDictionary(r => r.Name, r => $"{r.Process!.Value.Pid} {r.Process.Value.StartTime}", StringComparer.Ordinal);

    /// <summary>Each resource's state and health as Aspire sees them, one line each.</summary>
    public string ResourceStates()
    {
        var notifications = App.Services.GetRequiredService<ResourceNotificationService>();
        var lines = App.Services.GetRequiredService<DistributedApplicationModel>().Resources.Select(r =>
            notifications.TryGetCurrentState(r.Name, out var e)
                ? $"  {r.Name}: {e.Snapshot.State?.Text ?? "?"} ({e.Snapshot.HealthStatus?.ToString() ?? "no health"}), exit code {e.Snapshot.ExitCode?.ToString(CultureInfo.InvariantCulture) ?? "-"}"
                : $"  {r.Name}: (no state)");
        return "--- resources ---\n" + string.Join('\n', lines);
    }

    /// <summary>The last lines the resources wrote (each prefixed with its name).</summary>
    public string ApphostLogTail(int lines = 60)
    {
        try
        {
            string[] all;
            lock (_logLock)
            {
                all = File.ReadAllLines(ApphostLog);
            }

            return $"--- resources' log ({ApphostLog}), last {Math.Min(lines, all.Length)} lines ---\n"
                + string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"(no resources' log: {ex.Message})";
        }
    }

    /// <summary>The built dll of a project under the repository (Release, else Debug), or an explanation of how to build it.</summary>
    public string BuiltAssembly(string projectDirectory, string assemblyName) => BuiltAssemblies.Find(projectDirectory, assemblyName);

    public static string DotnetHost() => BuiltAssemblies.DotnetHost();

    private (int Pid, long StartTime)? ResourceProcess(string name)
    {
        if (_app is null || !App.Services.GetRequiredService<ResourceNotificationService>().TryGetCurrentState(name, out var current) ||
            current.Snapshot.Properties.FirstOrDefault(p => p.Name == "executable.pid")?.Value is not { } value ||
            !int.TryParse(Convert.ToString(value, CultureInfo.InvariantCulture), CultureInfo.InvariantCulture, out var pid))
        {
            return null;
        }

        // dotnet run → the service's own executable; bash postgres.sh → postgres.
        for (var hops = 0; hops < 4 && IsWrapper(UnixProcess.CommandLine(pid)) && FirstChild(pid) is { } child; hops++)
        {
            pid = child;
        }

        return UnixProcess.IsAlive(pid) && UnixProcess.StartTime(pid) is { } start ? (pid, start) : null;

        static bool IsWrapper(string commandLine) =>
            commandLine.StartsWith("dotnet run ", StringComparison.Ordinal) || commandLine.Contains("/dotnet run ", StringComparison.Ordinal) ||
            commandLine.StartsWith("bash ", StringComparison.Ordinal) || commandLine.StartsWith("/bin/bash ", StringComparison.Ordinal) ||
            commandLine.StartsWith("/usr/bin/bash ", StringComparison.Ordinal);
    }

    private static int? FirstChild(int pid)
    {
        try
        {
            var children = File.ReadAllText($"/proc/{pid}/task/{pid}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return children.Length > 0 && int.TryParse(children[0], CultureInfo.InvariantCulture, out var child) ? child : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private async Task StartAsync()
    {
        Directory.CreateDirectory(WorkDirectory);
        using var timeout = new CancellationTokenSource(StartupTimeout);
        string[] arguments =
        [
            "--data-dir", DataDirectory,
            "--postgres-port", PostgresPort.ToString(CultureInfo.InvariantCulture),
            "--redis-port", RedisPort.ToString(CultureInfo.InvariantCulture),
            "--gateway-port", GatewayGrpcPort.ToString(CultureInfo.InvariantCulture),
            "--gateway-rest-port", GatewayRestPort.ToString(CultureInfo.InvariantCulture),
            "--metrics-port", "0",
        ];
        var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.Lifeline_AppHost>(
            arguments,
            (options, _) =>
            {
                options.DisableDashboard = false; // the browser test opens it
                options.AllowUnsecuredTransport = true;
            },
            timeout.Token);
        // Aspire.Hosting.Testing also logs every resource's output to this process's console; it is in ApphostLog instead.
        builder.Services.AddLogging(logging => logging.AddFilter("Lifeline.AppHost.Resources", LogLevel.None));
        _app = await builder.BuildAsync(timeout.Token);
        CopyResourceLogs();
        try
        {
            await _app.StartAsync(timeout.Token);
            await _app.ResourceNotifications.WaitForResourceHealthyAsync("gateway", timeout.Token);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw new TimeoutException($"The suite was not healthy within {StartupTimeout.TotalSeconds:0} s.\n{ResourceStates()}\n{ApphostLogTail()}");
        }

        Credentials = await ReadCredentialsAsync();
        await WaitUntilHealthyAsync(TimeSpan.FromSeconds(60));
    }

    /// <summary>
    /// Appends every resource's console lines to <see cref="ApphostLog"/>: each instance as it appears (Aspire keys logs
    /// by instance, e.g. <c>queue-abcd1234</c>), restarts included.
    /// </summary>
    private void CopyResourceLogs()
    {
        var logs = App.Services.GetRequiredService<ResourceLoggerService>();
        var notifications = App.Services.GetRequiredService<ResourceNotificationService>();
        var watched = new HashSet<string>(StringComparer.Ordinal);
        _logTasks.Enqueue(Task.Run(async () =>
        {
            try
            {
                await foreach (var change in notifications.WatchAsync(_logCopy.Token))
                {
                    if (watched.Add(change.ResourceId))
                    {
                        _logTasks.Enqueue(CopyLogAsync(logs, change.ResourceId, change.Resource.Name));
                    }
                }
            }
            catch (OperationCanceledException)
            {
                // Stopping.
            }
        }));
    }

    private async Task CopyLogAsync(ResourceLoggerService logs, string resourceId, string name)
    {
        try
        {
            await foreach (var batch in logs.WatchAsync(resourceId).WithCancellation(_logCopy.Token))
            {
                lock (_logLock)
                {
                    File.AppendAllLines(ApphostLog, batch.Select(line => $"[{name}] {line.Content}"));
                }
            }
        }
        catch (OperationCanceledException)
        {
            // Stopping.
        }
    }

    private async Task<SuiteCredentials> ReadCredentialsAsync()
    {
        var stopwatch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                return SuiteCredentials.Load(CredentialsFile);
            }
            catch (Exception ex) when (ex is IOException or JsonException && stopwatch.Elapsed < TimeSpan.FromSeconds(10))
            {
                await Task.Delay(200);
            }
        }
    }

    private async Task StopAsync()
    {
        if (_app is { } app)
        {
            using var timeout = new CancellationTokenSource(StopTimeout);
            try
            {
                await app.StopAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                // DCP removes what is left when it sees this process's AppHost go.
            }

            await _logCopy.CancelAsync();
            await Task.WhenAll(_logTasks.ToArray()).WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { }, TaskScheduler.Default);
            await app.DisposeAsync();
            _app = null;
        }

        try
        {
            Directory.Delete(WorkDirectory, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // A leftover in /tmp is harmless.
        }
    }
}

[CollectionDefinition(Name)]
public sealed class SuiteCollection : ICollectionFixture<SuiteFixture>
{
    public const string Name = "suite";
}
