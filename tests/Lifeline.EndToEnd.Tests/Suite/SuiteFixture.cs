using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Lifeline.Processes;
using Lifeline.Testing;

namespace Lifeline.EndToEnd.Tests.Suite;

/// <summary>
/// The whole suite as a user runs it: the built apphost as a child process with its own temporary
/// <c>--data-dir</c> and free PostgreSQL, Redis and gateway ports. Ready once the gateway's <c>/health</c> on the
/// REST port answers 200; then <c>credentials.json</c> is read. Stopped with SIGTERM (the apphost stops services,
/// Redis and PostgreSQL in order) at the end, after a failed start too; a watchdog does the same if the test
/// process dies first.
/// </summary>
/// <remarks>
/// The services' own ports (queue 5101, registry 5102, …) are moved by a free <c>--service-port-offset</c>, so the
/// suite runs beside a <c>./build/run.sh</c> or another test run. Test classes share one suite (one xunit
/// collection), so they run one after another.
/// </remarks>
public sealed class SuiteFixture : IAsyncLifetime
{
    private static readonly TimeSpan StartupTimeout = TimeSpan.FromMinutes(4);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(90);

    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(30) };
    private Process? _apphost;

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
        ServicePortOffset = FreeServicePortOffset();
    }

    public string RepositoryRoot { get; }

    /// <summary>Temporary directory holding the data directory and the apphost's log; deleted at the end.</summary>
    public string WorkDirectory { get; }

    public string DataDirectory { get; }

    public string ApphostLog { get; }

    public int PostgresPort { get; }

    public int RedisPort { get; }

    public int GatewayGrpcPort { get; }

    public int GatewayRestPort { get; }

    /// <summary>Added by the apphost to every service's port (queue 5101, registry 5102, up to 5109 reserved).</summary>
    public int ServicePortOffset { get; }

    public SuiteCredentials Credentials { get; private set; } = null!;

    public string CredentialsFile => Path.Combine(DataDirectory, "credentials.json");

    /// <summary>
    /// Mints identities with this suite's key (from the AppHost's <c>secrets.json</c>), for tests that call a
    /// service process directly as another service would.
    /// </summary>
    public Lifeline.ServiceDefaults.Security.IdentityTokens Identity => _identity ??= new(Microsoft.Extensions.Options.Options.Create(
        new Lifeline.ServiceDefaults.Security.IdentityOptions
        {
            SigningKey = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(DataDirectory, "secrets.json")))
                .RootElement.GetProperty("identitySigningKey").GetString()!,
        }));

    private Lifeline.ServiceDefaults.Security.IdentityTokens? _identity;

    /// <summary>The gateway's gRPC address, as credentials.json gives it.</summary>
    public Uri GatewayGrpc => Credentials.GatewayGrpc;

    /// <summary>The gateway's REST (HTTP/1.1) address, as credentials.json gives it.</summary>
    public Uri GatewayRest => Credentials.GatewayRest;

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
    }

    /// <summary>A gRPC channel to the gateway sending the key named <paramref name="keyName"/>; none when null.</summary>
    public CallInvoker Grpc(string? keyName)
    {
        var channel = _channels.GetOrAdd(keyName ?? "", _ => GrpcChannel.ForAddress(GatewayGrpc));
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

    /// <summary>Waits until the gateway's <c>/health</c> answers 200, or throws with the apphost's log.</summary>
    public async Task WaitUntilHealthyAsync(TimeSpan timeout)
    {
        var stopwatch = Stopwatch.StartNew();
        HttpStatusCode? last = null;
        while (stopwatch.Elapsed < timeout)
        {
            if (_apphost is { HasExited: true } exited)
            {
                throw new InvalidOperationException(
                    $"The apphost exited with code {exited.ExitCode} before the suite was healthy.\n{ApphostLogTail()}");
            }

            last = await HealthAsync();
            if (last == HttpStatusCode.OK)
            {
                return;
            }

            await Task.Delay(500);
        }

        throw new TimeoutException(
            $"The gateway's /health was not 200 within {timeout.TotalSeconds:0} s (last: {last?.ToString() ?? "no answer"}).\n{ApphostLogTail()}");
    }

    /// <summary>The pid the apphost recorded for a resource (<c>&lt;data-dir&gt;/run/NAME.pid</c>), if that process is alive.</summary>
    public int? ResourcePid(string name)
    {
        var path = Path.Combine(DataDirectory, "run", name + ".pid");
        try
        {
            var fields = File.ReadAllText(path).Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            return fields.Length >= 1 && int.TryParse(fields[0], CultureInfo.InvariantCulture, out var pid) && UnixProcess.IsAlive(pid)
                ? pid
                : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The last lines the apphost wrote (its own and every resource's, prefixed).</summary>
    public string ApphostLogTail(int lines = 60)
    {
        try
        {
            var all = File.ReadAllLines(ApphostLog);
            return $"--- apphost log ({ApphostLog}), last {Math.Min(lines, all.Length)} lines ---\n"
                + string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"(no apphost log: {ex.Message})";
        }
    }

    /// <summary>The built dll of a project under the repository (Release, else Debug), or an explanation of how to build it.</summary>
    public string BuiltAssembly(string projectDirectory, string assemblyName) => BuiltAssemblies.Find(projectDirectory, assemblyName);

    public static string DotnetHost() => BuiltAssemblies.DotnetHost();

    private async Task StartAsync()
    {
        var apphost = BuiltAssembly("apphost/Lifeline.AppHost", "Lifeline.AppHost");
        Directory.CreateDirectory(WorkDirectory);

        // Output to a file, not a pipe: if this test process dies, the apphost must not die of a broken pipe before the
        // watchdog stops it in order.
        string[] arguments =
        [
            apphost,
            "--data-dir", DataDirectory,
            "--postgres-port", PostgresPort.ToString(CultureInfo.InvariantCulture),
            "--redis-port", RedisPort.ToString(CultureInfo.InvariantCulture),
            "--gateway-port", GatewayGrpcPort.ToString(CultureInfo.InvariantCulture),
            "--gateway-rest-port", GatewayRestPort.ToString(CultureInfo.InvariantCulture),
            "--service-port-offset", ServicePortOffset.ToString(CultureInfo.InvariantCulture),
        ];
        var startInfo = new ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            WorkingDirectory = RepositoryRoot,
        };
        foreach (var argument in (string[])["-c", "exec \"$0\" \"$@\" </dev/null >>\"$LIFELINE_E2E_LOG\" 2>&1", DotnetHost(), .. arguments])
        {
            startInfo.ArgumentList.Add(argument);
        }

        startInfo.Environment["LIFELINE_E2E_LOG"] = ApphostLog;
        foreach (var inherited in startInfo.Environment.Keys.Where(k => k.StartsWith("LIFELINE_", StringComparison.Ordinal) && k != "LIFELINE_E2E_LOG").ToList())
        {
            startInfo.Environment.Remove(inherited); // the suite is configured by the arguments above only
        }

        _apphost = Process.Start(startInfo) ?? throw new InvalidOperationException("Could not start the apphost.");
        _apphost.StandardInput.Close();
        StartWatchdog(_apphost.Id);

        await WaitUntilHealthyAsync(StartupTimeout);
        Credentials = await ReadCredentialsAsync();
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
        if (_apphost is { } apphost)
        {
            if (!apphost.HasExited)
            {
                UnixProcess.Signal(apphost.Id, UnixProcess.SigTerm);
                using var timeout = new CancellationTokenSource(StopTimeout);
                try
                {
                    await apphost.WaitForExitAsync(timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    apphost.Kill(entireProcessTree: true);
                }
            }

            apphost.Dispose();
            _apphost = null;
        }

        try
        {
            Directory.Delete(WorkDirectory, recursive: true);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // A leftover in /tmp is harmless; the watchdog tries again.
        }
    }

    /// <summary>
    /// A detached shell that waits for this test process to end and then stops the apphost with SIGTERM (escalating to
    /// SIGKILL after 60 s) and removes the work directory: the test host is often killed right after a run, which
    /// skips <see cref="DisposeAsync"/>.
    /// </summary>
    private void StartWatchdog(int apphostPid)
    {
        const string Script = """
            exec </dev/null >/dev/null 2>&1
            owner="$1"; apphost="$2"; work="$3"
            alive() { s=$(sed -n 's/.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; }
            while alive "$owner"; do sleep 1; done
            if alive "$apphost" && tr '\0' ' ' < "/proc/$apphost/cmdline" | grep -q Lifeline.AppHost; then
              kill -TERM "$apphost"; i=0
              while alive "$apphost" && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
              kill -KILL "$apphost" 2>/dev/null
            fi
            rm -rf "$work"
            """;
        var setsid = File.Exists("/usr/bin/setsid") ? "/usr/bin/setsid" : null;
        string[] command =
        [
            "/bin/sh", "-c", Script, "lifeline-e2e-watchdog",
            Environment.ProcessId.ToString(CultureInfo.InvariantCulture), apphostPid.ToString(CultureInfo.InvariantCulture), WorkDirectory,
        ];
        var startInfo = new ProcessStartInfo(setsid ?? command[0]) { UseShellExecute = false, WorkingDirectory = "/" };
        foreach (var argument in setsid is null ? command[1..] : command)
        {
            startInfo.ArgumentList.Add(argument);
        }

        Process.Start(startInfo)?.Dispose();
    }

    /// <summary>An offset in 10,000–49,000 under which the service ports 5101–5109 are all free right now.</summary>
    private static int FreeServicePortOffset()
    {
        for (var attempt = 0; attempt < 200; attempt++)
        {
            var offset = Random.Shared.Next(10_000, 49_000);
            if (Enumerable.Range(5101 + offset, 9).All(IsFree))
            {
                return offset;
            }
        }

        throw new InvalidOperationException("No free range of service ports found for --service-port-offset.");

        static bool IsFree(int port)
        {
            try
            {
                var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, port);
                listener.Start();
                listener.Stop();
                return true;
            }
            catch (System.Net.Sockets.SocketException)
            {
                return false;
            }
        }
    }
}

[CollectionDefinition(Name)]
public sealed class SuiteCollection : ICollectionFixture<SuiteFixture>
{
    public const string Name = "suite";
}
