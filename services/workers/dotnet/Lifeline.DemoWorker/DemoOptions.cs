using System.Globalization;
using Lifeline.Worker;

namespace Lifeline.DemoWorker;

/// <summary>The demo worker's command line.</summary>
internal sealed class DemoOptions
{
    public const string Usage =
        """
        Usage: dotnet workers/dotnet/Lifeline.DemoWorker/bin/Release/net10.0/Lifeline.DemoWorker.dll [options]

          --target <url>           gateway gRPC address, e.g. http://127.0.0.1:5100 (default: gateway_grpc of --credentials)
          --api-key <key>          API key (sent as 'authorization: Bearer <key>')
          --credentials <file>     the apphost's credentials.json, e.g. .lifeline/credentials.json
          --key-name <name>        key to use from --credentials (default default-worker)
          --types <a,b>            task types to run: demo.echo, demo.fail, demo.steps (default demo.echo,demo.fail)
          --max-tasks <n>          tasks run at once (default 4)
          --once <n>               exit after n tasks have ended (for tests)
          --lease-seconds <n>      lease of each task, extended while it runs (default 30)
          --journal-dir <dir>      offline journal directory: <dir>/<name>.journal (default .lifeline-journal)
          --ledger <path>          demo.steps appends "task_id fencing_token resumed_from_step" per finished task to <path>.<pid>
          --name <name>            worker name (default dotnet-<host>-<pid>)
          --registry-target <url>  gateway address for registry calls, when it differs from --target
          -h, --help               this text
        """;

    private static readonly string[] KnownTypes = ["demo.echo", "demo.fail", "demo.steps"];
    private static readonly string[] DefaultTypes = ["demo.echo", "demo.fail"];

    public Uri? Target { get; private set; }

    public Uri? RegistryTarget { get; private set; }

    public string? ApiKey { get; private set; }

    public string? Name { get; private set; }

    public int MaxTasks { get; private set; } = 4;

    public int? Once { get; private set; }

    public int? LeaseSeconds { get; private set; }

    public string? JournalDirectory { get; private set; }

    public IReadOnlySet<string> Types { get; private set; } = new HashSet<string>(DefaultTypes, StringComparer.Ordinal);

    /// <summary>demo.steps appends one line per finished task to &lt;Ledger&gt;.&lt;pid&gt;: "task_id fencing_token resumed_from_step".</summary>
    public string? Ledger { get; private set; }

    public bool ShowHelp { get; private set; }

    /// <exception cref="ArgumentException">An unknown option, a missing or malformed value, or an unreadable credentials file.</exception>
    public static DemoOptions Parse(IReadOnlyList<string> args)
    {
        var options = new DemoOptions();
        string? credentials = null;
        var keyName = "default-worker";
        for (var i = 0; i < args.Count; i++)
        {
            string Value() => i + 1 < args.Count ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--target": options.Target = ParseUri(Value(), "--target"); break;
                case "--registry-target": options.RegistryTarget = ParseUri(Value(), "--registry-target"); break;
                case "--api-key": options.ApiKey = Value(); break;
                case "--credentials": credentials = Value(); break;
                case "--key-name": keyName = Value(); break;
                case "--name": options.Name = Value(); break;
                case "--max-tasks": options.MaxTasks = ParsePositive(Value(), "--max-tasks"); break;
                case "--once": options.Once = ParsePositive(Value(), "--once"); break;
                case "--ledger": options.Ledger = Value(); break;
                case "--lease-seconds": options.LeaseSeconds = ParsePositive(Value(), "--lease-seconds"); break;
                case "--journal-dir": options.JournalDirectory = Value(); break;
                case "--types":
                    var types = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
                    var unknown = types.Except(KnownTypes, StringComparer.Ordinal).ToList();
                    if (types.Length == 0 || unknown.Count > 0)
                    {
                        throw new ArgumentException($"--types: unknown '{string.Join(", ", unknown)}'; known: {string.Join(", ", KnownTypes)}.");
                    }

                    options.Types = new HashSet<string>(types, StringComparer.Ordinal);
                    break;
                case "-h" or "--help": options.ShowHelp = true; break;
                default: throw new ArgumentException($"Unknown option '{args[i]}'.");
            }
        }

        if (credentials is not null)
        {
            try
            {
                var file = LifelineCredentials.Load(credentials);
                options.Target ??= file.GatewayGrpc;
                options.ApiKey ??= file.Key(keyName).Key;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Text.Json.JsonException or KeyNotFoundException)
            {
                throw new ArgumentException($"--credentials {credentials}: {ex.Message}", ex);
            }
        }

        if (options.Target is null && !options.ShowHelp)
        {
            throw new ArgumentException("Give --target, or --credentials with a gateway_grpc entry.");
        }

        return options;
    }

    public void Apply(LifelineWorkerOptions worker)
    {
        worker.Target = Target;
        worker.RegistryTarget = RegistryTarget;
        worker.ApiKey = ApiKey;
        worker.MaxConcurrentTasks = MaxTasks;
        worker.StopAfterTasks = Once;
        if (LeaseSeconds is { } lease)
        {
            worker.LeaseDuration = TimeSpan.FromSeconds(lease);
        }

        if (JournalDirectory is not null)
        {
            worker.JournalDirectory = JournalDirectory;
        }
        if (Name is not null)
        {
            worker.Name = Name;
        }
    }

    private static Uri ParseUri(string value, string option) =>
        Uri.TryCreate(value, UriKind.Absolute, out var uri) ? uri : throw new ArgumentException($"{option}: '{value}' is not an absolute URL.");

    private static int ParsePositive(string value, string option) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number > 0
            ? number
            : throw new ArgumentException($"{option}: '{value}' is not a positive number.");
}
