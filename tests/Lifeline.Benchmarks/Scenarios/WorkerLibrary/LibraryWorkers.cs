extern alias worker;
using Lifeline.Testing;
using worker::Lifeline.Worker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Lifeline.Benchmarks.Scenarios.WorkerLibrary;

/// <summary>
/// N <see cref="LifelineWorker"/>s in this process, each with <c>slots</c> handler slots, connected to the gateway with a
/// worker key, running a handler that does nothing but return <c>{}</c>: what is measured is the library and the
/// services, not the work. The library's defaults otherwise (LeaseTasks with start, batched CompleteTasks,
/// HeartbeatStream). Their warnings and errors are kept (<see cref="Logs"/>).
/// </summary>
internal sealed class LibraryWorkers : IAsyncDisposable
{
    private readonly List<LifelineWorker> _workers = [];
    private readonly ILoggerFactory _loggers;
    private readonly string _journalDirectory;

    private LibraryWorkers(ILoggerFactory loggers, CapturedLogs logs, string journalDirectory)
    {
        _loggers = loggers;
        Logs = logs;
        _journalDirectory = journalDirectory;
    }

    public CapturedLogs Logs { get; }

    public IReadOnlyList<LifelineWorker> Workers => _workers;

    /// <summary>Completions the queue accepted, over every worker.</summary>
    public long Completed => _workers.Sum(w => w.Statistics.Completed);

    /// <summary>Outcomes journaled, refused or retried, over every worker: all zero in a healthy run.</summary>
    public (long Journaled, long Refused, long Retries) Trouble =>
        (_workers.Sum(w => w.Statistics.Journaled), _workers.Sum(w => w.Statistics.Refused), _workers.Sum(w => w.Statistics.Retries));

    public static async Task<LibraryWorkers> StartAsync(
        Uri gateway, string apiKey, IReadOnlyList<string> taskTypes, string namePrefix, int count, int slots, CancellationToken ct)
    {
        var logs = new CapturedLogs();
        var loggers = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Warning));
        var journals = Path.Combine(Path.GetTempPath(), $"lifeline-bench-journal-{Guid.NewGuid():N}");
        var workers = new LibraryWorkers(loggers, logs, journals);
        try
        {
            for (var i = 0; i < count; i++)
            {
                var options = new LifelineWorkerOptions
                {
                    Target = gateway,
                    ApiKey = apiKey,
                    Name = $"{namePrefix}-{i}",
                    MaxConcurrentTasks = slots,
                    LeaseDuration = TimeSpan.FromSeconds(60),
                    PollWait = TimeSpan.FromSeconds(5),
                    JournalDirectory = journals,
                    StopHostWhenFinished = false,
                };
                var worker = new LifelineWorker(Options.Create(options), [.. taskTypes.Select(type => new NoOpHandler(type))], loggers.CreateLogger<LifelineWorker>());
                workers._workers.Add(worker);
                await worker.StartAsync(ct);
            }

            // Registered (each has its id) before anything is timed.
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (workers._workers.Any(w => w.WorkerId is null))
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new InvalidOperationException("The library's workers did not register within 60 s: " +
                        string.Join("; ", logs.Entries.Select(e => e.Message).TakeLast(5)));
                }

                await Task.Delay(50, ct);
            }

            return workers;
        }
        catch
        {
            await workers.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await Task.WhenAll(_workers.Select(w => w.StopAsync(timeout.Token)));
        foreach (var worker in _workers)
        {
            worker.Dispose();
        }

        _loggers.Dispose();
        if (Directory.Exists(_journalDirectory))
        {
            Directory.Delete(_journalDirectory, recursive: true);
        }
    }

    private sealed class NoOpHandler(string taskType) : ITaskHandler
    {
        public string TaskType { get; } = taskType;

        public Task<string?> HandleAsync(TaskContext context, CancellationToken cancellationToken) => Task.FromResult<string?>("{}");
    }
}
