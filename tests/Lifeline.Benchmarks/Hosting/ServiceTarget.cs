using Lifeline.Benchmarks.Measurement;
using Lifeline.Testing;
using Npgsql;

namespace Lifeline.Benchmarks.Hosting;

/// <summary>
/// The queue service under test: either one this run started (with its own PostgreSQL and Redis, all
/// stopped on dispose) or one already running at a URL.
/// </summary>
internal sealed class QueueTarget : IAsyncDisposable
{
    private static readonly string[] ReportedPostgresSettings =
        ["server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level", "shared_buffers", "max_connections"];

    private readonly IReadOnlyList<IAsyncDisposable> _owned;
    private readonly QueueServiceProcess? _service;

    private QueueTarget(Uri url, int? pid, string description, IReadOnlyDictionary<string, string> postgresSettings,
        QueueServiceProcess? service, IReadOnlyList<IAsyncDisposable> owned)
    {
        Url = url;
        Pid = pid;
        Description = description;
        PostgresSettings = postgresSettings;
        _service = service;
        _owned = owned;
    }

    public Uri Url { get; }

    /// <summary>The service's process id when known: its memory is read after each phase.</summary>
    public int? Pid { get; }

    public string Description { get; }

    /// <summary>Settings of the service's PostgreSQL cluster, when this run started it.</summary>
    public IReadOnlyDictionary<string, string> PostgresSettings { get; }

    /// <summary>The service's console output, when this run started it.</summary>
    public ServiceOutput? Output => _service?.Output;

    public ServiceMemory? ReadMemory() => Pid is { } pid ? ServiceMemory.Read(pid) : null;

    /// <summary>Throws, with the service's last output, when the service this run started has died.</summary>
    public void EnsureServiceRunning()
    {
        if (_service is { HasExited: true })
        {
            throw new InvalidOperationException($"The queue service exited during the run. Its last output:\n{_service.Output.Tail()}");
        }
    }

    public static QueueTarget Existing(Uri url, int? pid) =>
        new(url, pid, $"existing service at {url}", new Dictionary<string, string>(), service: null, owned: []);

    /// <summary>Durable PostgreSQL cluster + Redis + the queue service as a child process.</summary>
    public static async Task<QueueTarget> StartLocalAsync(CancellationToken ct)
    {
        var owned = new List<IAsyncDisposable>();
        try
        {
            var postgresStart = PostgresServer.StartDedicatedAsync(Testing.PostgresSettings.Durable);
            var redisStart = RedisServer.StartAsync();
            try
            {
                await Task.WhenAll(postgresStart, redisStart);
            }
            finally
            {
                // Whichever started is stopped again even if the other failed.
                if (postgresStart.IsCompletedSuccessfully)
                {
                    owned.Add(postgresStart.Result);
                }

                if (redisStart.IsCompletedSuccessfully)
                {
                    owned.Add(redisStart.Result);
                }
            }

            var postgres = postgresStart.Result;
            var database = await postgres.CreateDatabaseAsync("queue_benchmark", ct);
            var settings = await ReadPostgresSettingsAsync(postgres.AdminConnectionString, ct);
            if (settings["fsync"] != "on" || settings["synchronous_commit"] != "on" || settings["full_page_writes"] != "on")
            {
                throw new InvalidOperationException("The benchmark cluster is not durable: " + string.Join(", ", settings));
            }

            var service = await QueueServiceProcess.StartAsync(database, redisStart.Result.ConnectionString, ct);
            owned.Add(service);
            var description =
                $"local: {QueueServiceProcess.AssemblyPath} (pid {service.Pid}) at {service.Url}, " +
                $"Queue:WorkerEligibility={QueueServiceProcess.WorkerEligibility} (no registry); " +
                $"PostgreSQL {settings["server_version"]} on 127.0.0.1:{postgres.Port}; Redis on {redisStart.Result.ConnectionString}";
            return new QueueTarget(service.Url, service.Pid, description, settings, service, owned);
        }
        catch
        {
            await DisposeAllAsync(owned);
            throw;
        }
    }

    public ValueTask DisposeAsync() => DisposeAllAsync(_owned);

    private static async ValueTask DisposeAllAsync(IReadOnlyList<IAsyncDisposable> owned)
    {
        // The service first, then what it depends on.
        for (var i = owned.Count - 1; i >= 0; i--)
        {
            await owned[i].DisposeAsync();
        }
    }

    private static async Task<IReadOnlyDictionary<string, string>> ReadPostgresSettingsAsync(string connectionString, CancellationToken ct)
    {
        var settings = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        foreach (var name in ReportedPostgresSettings)
        {
            await using var command = new NpgsqlCommand($"SHOW {name}", connection);
            settings[name] = (string)(await command.ExecuteScalarAsync(ct))!;
        }

        return settings;
    }
}
