using System.Globalization;

namespace Lifeline.AppHost;

/// <summary>
/// The AppHost's own command-line options; each falls back to a <c>LIFELINE_*</c> environment variable, then to a
/// default. Arguments of the form <c>--Section:Key=value</c> are not ours: they go on to Aspire's configuration.
/// </summary>
internal sealed record AppHostOptions
{
    public const int DefaultPostgresPort = 55432;
    public const int DefaultRedisPort = 56379;
    public const int DefaultGatewayPort = 5100;
    public const int DefaultGatewayRestPort = 5180;
    public const int DefaultDashboardPort = 18888;
    public const int DefaultDashboardOtlpPort = 18889;
    public const int DefaultMetricsPort = 9461;

    public const string Usage =
        """
        Usage: build/run.sh [options]      (or: dotnet run --project apphost/Lifeline.AppHost -c Release -- [options])

        The .NET Aspire AppHost of the suite: starts PostgreSQL, Redis, every Lifeline service, the gateway in front
        of them and the Aspire dashboard; restarts what crashes; stops everything on Ctrl-C / SIGTERM. Development
        credentials are made at the first run, kept in <data dir>/secrets.json and written to credentials.json (0600).

        Options (environment variable in brackets); a port of 0 means any free port:
          --postgres <connection string>  Use this PostgreSQL server (an admin role that may create roles and
                                          databases) instead of a local cluster  [LIFELINE_POSTGRES, ConnectionStrings__postgres]
          --redis <configuration>         Use this Redis (e.g. host:6379) instead of a local redis-server
                                                                                 [LIFELINE_REDIS, ConnectionStrings__redis]
          --postgres-port <port>          Port of the local cluster (default 55432)          [LIFELINE_POSTGRES_PORT]
          --redis-port <port>             Port of the local redis-server (default 56379)     [LIFELINE_REDIS_PORT]
          --gateway-port <port>           The gateway's gRPC port, HTTP/2 cleartext (default 5100) [LIFELINE_GATEWAY_PORT]
          --gateway-rest-port <port>      The gateway's REST port, HTTP/1.1 (default 5180)   [LIFELINE_GATEWAY_REST_PORT]
          --dashboard-port <port>         The Aspire dashboard (default 18888; its OTLP receiver is the next port)
                                                                                             [LIFELINE_DASHBOARD_PORT]
          --dashboard-otlp-port <port>    The dashboard's OTLP/gRPC receiver (default: the dashboard's port + 1)
          --metrics-port <port>           First of the services' Prometheus ports: /metrics over HTTP/1.1 for queue,
                                          registry, checkpoint, recovery, backup on this port and the next four
                                          (default 9461-9465; 0: free ones)                 [LIFELINE_METRICS_PORT]
          --port-offset <n>               Added to every default port above, to run a second suite beside the
                                          first (service ports are always free ones)          [LIFELINE_PORT_OFFSET]
          --anonymous-dashboard           The dashboard without its login token (local development only)
                                                                                             [LIFELINE_DASHBOARD_ANONYMOUS=1]
          --data-dir <directory>          Cluster, Redis data, secrets, backups (default <repo>/.lifeline) [LIFELINE_DATA_DIR]
          -h, --help                      Show this text
        """;

    public string? ExternalPostgres { get; init; }

    public string? ExternalRedis { get; init; }

    public int? PostgresPort { get; init; }

    public int? RedisPort { get; init; }

    public int? GatewayPort { get; init; }

    public int? GatewayRestPort { get; init; }

    public int? DashboardPort { get; init; }

    public int? DashboardOtlpPort { get; init; }

    public int? MetricsPort { get; init; }

    public int PortOffset { get; init; }

    public bool AnonymousDashboard { get; init; }

    public string? DataDirectory { get; init; }

    public bool ShowHelp { get; init; }

    /// <summary>Arguments for Aspire's own configuration (<c>--Section:Key=value</c>).</summary>
    public IReadOnlyList<string> AspireArguments { get; init; } = [];

    /// <exception cref="AppHostException">An unknown option or a malformed value.</exception>
    public static AppHostOptions Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

        var options = new AppHostOptions
        {
            ExternalPostgres = NonEmpty(environment("LIFELINE_POSTGRES")),
            ExternalRedis = NonEmpty(environment("LIFELINE_REDIS")),
            PostgresPort = ParsePort(NonEmpty(environment("LIFELINE_POSTGRES_PORT")), "LIFELINE_POSTGRES_PORT"),
            RedisPort = ParsePort(NonEmpty(environment("LIFELINE_REDIS_PORT")), "LIFELINE_REDIS_PORT"),
            GatewayPort = ParsePort(NonEmpty(environment("LIFELINE_GATEWAY_PORT")), "LIFELINE_GATEWAY_PORT"),
            GatewayRestPort = ParsePort(NonEmpty(environment("LIFELINE_GATEWAY_REST_PORT")), "LIFELINE_GATEWAY_REST_PORT"),
            DashboardPort = ParsePort(NonEmpty(environment("LIFELINE_DASHBOARD_PORT")), "LIFELINE_DASHBOARD_PORT"),
            MetricsPort = ParsePort(NonEmpty(environment("LIFELINE_METRICS_PORT")), "LIFELINE_METRICS_PORT"),
            PortOffset = ParseOffset(NonEmpty(environment("LIFELINE_PORT_OFFSET")), "LIFELINE_PORT_OFFSET") ?? 0,
            AnonymousDashboard = NonEmpty(environment("LIFELINE_DASHBOARD_ANONYMOUS")) is "1" or "true",
            DataDirectory = NonEmpty(environment("LIFELINE_DATA_DIR")),
        };

        var aspire = new List<string>();
        for (var i = 0; i < args.Count; i++)
        {
            var (name, inlineValue) = args[i].Split('=', 2) is [var n, var v] && n.StartsWith("--", StringComparison.Ordinal)
                ? (n, v)
                : (args[i], null);
            if (name.Contains(':', StringComparison.Ordinal) && inlineValue is not null)
            {
                aspire.Add(args[i]);
                continue;
            }

            string Value()
            {
                if (inlineValue is not null)
                {
                    return inlineValue;
                }

                if (i + 1 >= args.Count)
                {
                    throw new AppHostException($"Option {name} needs a value.");
                }

                return args[++i];
            }

            options = name switch
            {
                "--postgres" => options with { ExternalPostgres = Value() },
                "--redis" => options with { ExternalRedis = Value() },
                "--postgres-port" => options with { PostgresPort = ParsePort(Value(), name) },
                "--redis-port" => options with { RedisPort = ParsePort(Value(), name) },
                "--gateway-port" => options with { GatewayPort = ParsePort(Value(), name) },
                "--gateway-rest-port" => options with { GatewayRestPort = ParsePort(Value(), name) },
                "--dashboard-port" => options with { DashboardPort = ParsePort(Value(), name) },
                "--dashboard-otlp-port" => options with { DashboardOtlpPort = ParsePort(Value(), name) },
                "--metrics-port" => options with { MetricsPort = ParsePort(Value(), name) },
                "--port-offset" => options with { PortOffset = ParseOffset(Value(), name)!.Value },
                "--anonymous-dashboard" => options with { AnonymousDashboard = true },
                "--data-dir" => options with { DataDirectory = Value() },
                "-h" or "--help" => options with { ShowHelp = true },
                _ => throw new AppHostException($"Unknown option '{args[i]}'. Run with --help for the options."),
            };
        }

        return options with { AspireArguments = aspire };
    }

    /// <summary>The Prometheus port of the <paramref name="index"/>-th service: <see cref="MetricsPort"/> + index (0: a free one), else the default's.</summary>
    public int ResolveMetricsPort(int index) => MetricsPort switch
    {
        0 => FreePort(),
        { } first => first + index,
        null => DefaultMetricsPort + PortOffset + index,
    };

    /// <summary>The port to use: the one given (0: a free one), else the default plus <see cref="PortOffset"/>.</summary>
    public int Resolve(int? given, int defaultPort) => given switch
    {
        0 => FreePort(),
        { } port => port,
        null => defaultPort + PortOffset,
    };

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static int? ParsePort(string? value, string source)
    {
        if (value is null)
        {
            return null;
        }

        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 0 and < 65536
            ? port
            : throw new AppHostException($"{source}: '{value}' is not a TCP port (0-65535; 0 picks a free one).");
    }

    private static int? ParseOffset(string? value, string source)
    {
        if (value is null)
        {
            return null;
        }

        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var offset) && offset <= 40_000
            ? offset
            : throw new AppHostException($"{source}: '{value}' is not a port offset (0-40000).");
    }
}
