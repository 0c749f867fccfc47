extern alias worker;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Scenarios.Processing;
using Lifeline.Testing;
using worker::Lifeline.Worker;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Lifeline.Benchmarks.Scenarios.WorkerLibrary;

/// <summary>
/// <see cref="LifelineWorker"/>s in this process, connected to the gateway with a worker key, running a handler that
/// does nothing but note the task (the row's ledger, and <c>onTask</c>) and return <c>{}</c>: what is measured is the
/// library and the services, not the work. The library's defaults throughout (lease with start, completions batched
/// into CompleteTasks, HeartbeatStream, 30 s leases, 20 s long polls) except the slots. Completions are the library's
/// own count of accepted outcomes; their warnings and errors go to the section's log (<see cref="LibraryAccess.Logs"/>).
/// </summary>
internal sealed class LibraryWorkers : IRowWorkers
{
    private readonly List<LifelineWorker> _workers = [];
    private readonly ILoggerFactory _loggers;
    private readonly string _journalDirectory;
    private readonly TaskLedger _ledger;
    private readonly CancellationTokenSource _exhausted = new();
    private readonly CancellationTokenSource _watching = new();
    private Task _watch = Task.CompletedTask;
    private bool _stopped;

    private LibraryWorkers(ILoggerFactory loggers, string journalDirectory, TaskLedger ledger)
    {
        _loggers = loggers;
        _journalDirectory = journalDirectory;
        _ledger = ledger;
    }

    public CallErrors Errors { get; } = new();

    /// <summary>Completions the queue accepted, over every worker.</summary>
    public long Completed => _workers.Sum(w => w.Statistics.Completed);

    public CancellationToken Exhausted => _exhausted.Token;

    /// <summary>Outcomes journaled, refused or retried, over every worker: all zero in a healthy run.</summary>
    public (long Journaled, long Refused, long Retries) Trouble =>
        (_workers.Sum(w => w.Statistics.Journaled), _workers.Sum(w => w.Statistics.Refused), _workers.Sum(w => w.Statistics.Retries));

    /// <summary>Starts <paramref name="count"/> workers of <paramref name="slots"/> slots on <paramref name="taskType"/> and waits until each has registered.</summary>
    public static async Task<LibraryWorkers> StartAsync(
        LibraryAccess access, string taskType, string namePrefix, int count, int slots, TaskLedger ledger, Action<string>? onTask, CancellationToken ct)
    {
        var logs = access.Logs;
        var loggers = LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Warning));
        var journals = Path.Combine(Path.GetTempPath(), $"lifeline-bench-journal-{Guid.NewGuid():N}");
        var workers = new LibraryWorkers(loggers, journals, ledger);
        try
        {
            for (var i = 0; i < count; i++)
            {
                var options = new LifelineWorkerOptions
                {
                    Target = access.Gateway,
                    ApiKey = access.ApiKey,
                    Name = $"{namePrefix}-{i}",
                    MaxConcurrentTasks = slots,
                    JournalDirectory = journals,
                    StopHostWhenFinished = false,
                };
                var worker = new LifelineWorker(Options.Create(options), [new NotingHandler(taskType, ledger, onTask)], loggers.CreateLogger<LifelineWorker>());
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

    /// <summary>The workers run from <see cref="StartAsync"/> on; this only starts watching for the backlog's end.</summary>
    public void Start(CancellationToken ct)
    {
        var token = _watching.Token;
        _watch = Task.Run(async () =>
        {
            while (!token.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                if (Completed >= _ledger.Expected)
                {
                    await _exhausted.CancelAsync();
                    return;
                }

                await Task.Delay(2, CancellationToken.None);
            }
        }, CancellationToken.None);
    }

    /// <summary>Nothing: the library cannot stop leasing without cancelling a LeaseTasks in flight, whose tasks would then sit leased until their lease ran out. The cut stops it.</summary>
    public Task PauseAsync() => Task.CompletedTask;

    public async Task StopAsync()
    {
        if (_stopped)
        {
            return;
        }

        _stopped = true;
        await _watching.CancelAsync();
        await _watch;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await Task.WhenAll(_workers.Select(w => w.StopAsync(timeout.Token)));
    }

    public IReadOnlyDictionary<string, LatencySummary> Calls() => new Dictionary<string, LatencySummary>();

    /// <summary>Every task the handlers saw (once each) was completed, none journaled or refused.</summary>
    public (bool Ok, string Text) CheckAccounts()
    {
        var (journaled, refused, _) = Trouble;
        var ok = _ledger.LeasedCount == Completed && _ledger.DuplicateLeases == 0 && journaled == 0 && refused == 0;
        return (ok, $"{Completed:N0} completed by the library, {_ledger.LeasedCount:N0} handled" +
                    (_ledger.DuplicateLeases > 0 ? $", {_ledger.DuplicateLeases} HANDLED TWICE" : "") +
                    (journaled > 0 ? $", {journaled} journaled" : "") + (refused > 0 ? $", {refused} refused" : ""));
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        foreach (var worker in _workers)
        {
            worker.Dispose();
        }

        _loggers.Dispose();
        _exhausted.Dispose();
        _watching.Dispose();
        if (Directory.Exists(_journalDirectory))
        {
            Directory.Delete(_journalDirectory, recursive: true);
        }
    }

    private sealed class NotingHandler(string taskType, TaskLedger ledger, Action<string>? onTask) : ITaskHandler
    {
        public string TaskType { get; } = taskType;

        public Task<string?> HandleAsync(TaskContext context, CancellationToken cancellationToken)
        {
            onTask?.Invoke(context.Payload);
            ledger.Leased(context.TaskId);
            return Task.FromResult<string?>("{}");
        }
    }
}
