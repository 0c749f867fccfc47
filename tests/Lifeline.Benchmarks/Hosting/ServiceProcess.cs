using System.Diagnostics;
using System.Globalization;
using System.Net;
using Lifeline.Testing;

namespace Lifeline.Benchmarks.Hosting;

/// <summary>
/// A Lifeline service run as production runs it: <c>dotnet Lifeline.X.dll</c> in a process of its own
/// (its own GC, thread pool and memory, measurable from /proc), listening h2c on a loopback port.
/// </summary>
internal sealed class ServiceProcess : IAsyncDisposable
{
    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(90);
    private readonly Process _process;

    private ServiceProcess(ServiceDefinition definition, Process process, Uri url, ServiceOutput output)
    {
        Definition = definition;
        _process = process;
        Url = url;
        Output = output;
    }

    public ServiceDefinition Definition { get; }

    public Uri Url { get; }

    public int Pid => _process.Id;

    public ServiceOutput Output { get; }

    public bool HasExited => _process.HasExited;

    /// <summary>Starts the service and returns once <c>/health</c> reports it healthy (schema migrated, PostgreSQL and Redis reachable).</summary>
    public static async Task<ServiceProcess> StartAsync(
        ServiceDefinition definition, string databaseConnectionString, string redisConnectionString, CancellationToken ct)
    {
        var assemblyPath = definition.AssemblyPath;
        if (!File.Exists(assemblyPath))
        {
            throw new FileNotFoundException(
                $"The {definition.Name} is not built at {assemblyPath}; run the benchmark with `dotnet run -c Release --project tests/Lifeline.Benchmarks`, which builds it.");
        }

        for (var attempt = 1; ; attempt++)
        {
            var service = Launch(definition, assemblyPath, FreePort.Next(), databaseConnectionString, redisConnectionString);
            try
            {
                await service.WaitUntilHealthyAsync(ct);
                return service;
            }
            catch (InvalidOperationException) when (attempt < 3 && service.Output.Contains("address already in use"))
            {
                // FreePort's port was taken before the service bound it: try another.
                await service.DisposeAsync();
            }
            catch
            {
                await service.DisposeAsync();
                throw;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await _process.WaitForExitAsync(timeout.Token);
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
        catch (OperationCanceledException)
        {
            // Killed but not yet reaped; nothing more to do.
        }
        finally
        {
            _process.Dispose();
        }
    }

    private static ServiceProcess Launch(
        ServiceDefinition definition, string assemblyPath, int port, string databaseConnectionString, string redisConnectionString)
    {
        var url = new Uri($"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}");
        var startInfo = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { assemblyPath },
            // The content root, where the service's appsettings.json (Kestrel h2c, service options) lives.
            WorkingDirectory = Path.GetDirectoryName(assemblyPath)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            Environment =
            {
                ["ASPNETCORE_URLS"] = url.ToString(),
                ["ASPNETCORE_ENVIRONMENT"] = "Production",
                ["DOTNET_ENVIRONMENT"] = "Production",
                [$"ConnectionStrings__{definition.DatabaseConnectionName}"] = databaseConnectionString,
                ["ConnectionStrings__redis"] = redisConnectionString,
                ["Logging__Console__FormatterOptions__SingleLine"] = "true",
            },
        };
        foreach (var (name, value) in TestIdentity.Environment.Concat(definition.Settings))
        {
            startInfo.Environment[name] = value;
        }

        var output = new ServiceOutput();
        var process = new Process { StartInfo = startInfo };
        process.OutputDataReceived += (_, e) => output.Append(e.Data);
        process.ErrorDataReceived += (_, e) => output.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new ServiceProcess(definition, process, url, output);
    }

    private async Task WaitUntilHealthyAsync(CancellationToken ct)
    {
        using var http = new HttpClient(new SocketsHttpHandler())
        {
            BaseAddress = Url,
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Timeout = TimeSpan.FromSeconds(5),
        };
        var deadline = Stopwatch.StartNew();
        var lastAnswer = "no answer yet";
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            if (_process.HasExited)
            {
                throw new InvalidOperationException(
                    $"The {Definition.Name} exited with code {_process.ExitCode} before it was healthy. Output:\n{Output.Tail()}");
            }

            try
            {
                using var response = await http.GetAsync(new Uri("/health", UriKind.Relative), ct);
                var body = await response.Content.ReadAsStringAsync(ct);
                lastAnswer = $"{(int)response.StatusCode} {body}";
                if (response.StatusCode == HttpStatusCode.OK && body == "Healthy")
                {
                    return;
                }
            }
            catch (HttpRequestException ex)
            {
                lastAnswer = ex.Message;
            }
            catch (TaskCanceledException) when (!ct.IsCancellationRequested)
            {
                lastAnswer = "/health timed out";
            }

            if (deadline.Elapsed > ReadyTimeout)
            {
                throw new InvalidOperationException(
                    $"The {Definition.Name} at {Url} was not healthy within {ReadyTimeout.TotalSeconds:0} s (last answer: {lastAnswer}). Output:\n{Output.Tail()}");
            }

            await Task.Delay(200, ct);
        }
    }
}
