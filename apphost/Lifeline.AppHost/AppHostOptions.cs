using System.Globalization;

namespace Lifeline.AppHost;

/// <summary>Command-line options; each falls back to a <c>LIFELINE_*</c> environment variable, then to a default.</summary>
internal sealed record AppHostOptions
{
    public const int DefaultPostgresPort = 55432;
    public const int DefaultRedisPort = 56379;
    public const int DefaultGatewayPort = 5100;
    public const int DefaultGatewayRestPort = 5180;

    public const string Usage =
        """
        Usage: build/run.sh [options]      (or: dotnet apphost/Lifeline.AppHost/bin/Release/net10.0/Lifeline.AppHost.dll [options])

        Starts PostgreSQL, Redis, every Lifeline service and the gateway in front of them, restarts services
        that crash, and stops everything on Ctrl-C / SIGTERM. Development API keys for the gateway are made at
        the first run and written to <data dir>/credentials.json.

        Options (environment variable in brackets):
          --postgres <connection string>  Use this PostgreSQL server (an admin role that may create roles and
                                          databases) instead of the local cluster          [LIFELINE_POSTGRES]
          --redis <configuration>         Use this Redis (StackExchange.Redis configuration, e.g. host:6379)
                                          instead of a local redis-server                   [LIFELINE_REDIS]
          --postgres-port <port>          Port of the local cluster (default 55432)         [LIFELINE_POSTGRES_PORT]
          --redis-port <port>             Port of the local redis-server (default 56379)    [LIFELINE_REDIS_PORT]
          --gateway-port <port>           The gateway's gRPC port (HTTP/2 cleartext; REST too) (default 5100)  [LIFELINE_GATEWAY_PORT]
          --gateway-rest-port <port>      The gateway's REST port (HTTP/1.1) (default 5180)  [LIFELINE_GATEWAY_REST_PORT]
          --service-port-offset <n>       Added to every service's port (registry 5102, queue 5101 …), to run
                                          beside another suite (default 0)                  [LIFELINE_SERVICE_PORT_OFFSET]
          --data-dir <directory>          Cluster, Redis data and secrets (default <repo>/.lifeline)  [LIFELINE_DATA_DIR]
          --exit-when-healthy             Start everything, verify it is healthy, stop cleanly and exit 0 (CI smoke check)
          --startup-timeout <seconds>     How long --exit-when-healthy waits for health (default 180)
          -h, --help                      Show this text
        """;

    public string? ExternalPostgres { get; init; }

    public string? ExternalRedis { get; init; }

    public int PostgresPort { get; init; } = DefaultPostgresPort;

    public int RedisPort { get; init; } = DefaultRedisPort;

    public int GatewayPort { get; init; } = DefaultGatewayPort;

    public int GatewayRestPort { get; init; } = DefaultGatewayRestPort;

    public int ServicePortOffset { get; init; }

    public string? DataDirectory { get; init; }

    public bool ExitWhenHealthy { get; init; }

    public TimeSpan StartupTimeout { get; init; } = TimeSpan.FromSeconds(180);

    public bool ShowHelp { get; init; }

    /// <exception cref="AppHostException">An unknown option or a malformed value.</exception>
    public static AppHostOptions Parse(IReadOnlyList<string> args, Func<string, string?> environment)
    {
        static string? NonEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;

        var options = new AppHostOptions
        {
            ExternalPostgres = NonEmpty(environment("LIFELINE_POSTGRES")),
            ExternalRedis = NonEmpty(environment("LIFELINE_REDIS")),
            PostgresPort = ParsePort(NonEmpty(environment("LIFELINE_POSTGRES_PORT")), "LIFELINE_POSTGRES_PORT") ?? DefaultPostgresPort,
            RedisPort = ParsePort(NonEmpty(environment("LIFELINE_REDIS_PORT")), "LIFELINE_REDIS_PORT") ?? DefaultRedisPort,
            GatewayPort = ParsePort(NonEmpty(environment("LIFELINE_GATEWAY_PORT")), "LIFELINE_GATEWAY_PORT") ?? DefaultGatewayPort,
            GatewayRestPort = ParsePort(NonEmpty(environment("LIFELINE_GATEWAY_REST_PORT")), "LIFELINE_GATEWAY_REST_PORT") ?? DefaultGatewayRestPort,
            ServicePortOffset = ParseOffset(NonEmpty(environment("LIFELINE_SERVICE_PORT_OFFSET")), "LIFELINE_SERVICE_PORT_OFFSET") ?? 0,
            DataDirectory = NonEmpty(environment("LIFELINE_DATA_DIR")),
        };

        for (var i = 0; i < args.Count; i++)
        {
            var (name, inlineValue) = args[i].Split('=', 2) is [var n, var v] && n.StartsWith("--", StringComparison.Ordinal)
                ? (n, v)
                : (args[i], null);

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
                "--postgres-port" => options with { PostgresPort = ParsePort(Value(), name)!.Value },
                "--redis-port" => options with { RedisPort = ParsePort(Value(), name)!.Value },
                "--gateway-port" => options with { GatewayPort = ParsePort(Value(), name)!.Value },
                "--gateway-rest-port" => options with { GatewayRestPort = ParsePort(Value(), name)!.Value },
                "--service-port-offset" => options with { ServicePortOffset = ParseOffset(Value(), name)!.Value },
                "--data-dir" => options with { DataDirectory = Value() },
                "--exit-when-healthy" => options with { ExitWhenHealthy = true },
                "--startup-timeout" => options with { StartupTimeout = ParseSeconds(Value(), name) },
                "-h" or "--help" => options with { ShowHelp = true },
                _ => throw new AppHostException($"Unknown option '{args[i]}'. Run with --help for the options."),
            };
        }

        return options;
    }

    private static int? ParsePort(string? value, string source)
    {
        if (value is null)
        {
            return null;
        }

        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and < 65536
            ? port
            : throw new AppHostException($"{source}: '{value}' is not a TCP port (1-65535).");
    }

    private static int? ParseOffset(string? value, string source)
    {
        if (value is null)
        {
            return null;
        }

        return int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var offset) && offset <= 50_000
            ? offset
            : throw new AppHostException($"{source}: '{value}' is not a port offset (0-50000).");
    }

    private static TimeSpan ParseSeconds(string value, string source) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds > 0
            ? TimeSpan.FromSeconds(seconds)
            : throw new AppHostException($"{source}: '{value}' is not a positive number of seconds.");
}
