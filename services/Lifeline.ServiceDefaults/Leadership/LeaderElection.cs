using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.ServiceDefaults.Leadership;

/// <summary>
/// Elects one instance per role (<see cref="Name"/>) among those sharing a service database, River-style: every third
/// of <see cref="Ttl"/> each instance runs the one guarded statement of <see cref="LeadershipTable.ClaimAsync"/> — the
/// holder renews its term, a standby takes the role once the term expired or was resigned, with the next term. The
/// term is the fencing token (<see cref="LeaderTerm.Fence"/>).
/// <list type="bullet">
/// <item>A holder whose renewal does not succeed steps down (its <see cref="LeaderTerm.Lost"/> fires) a tenth of the
/// TTL before the term would expire in the database — by a timer, so a hung connection cannot keep it leading.</item>
/// <item>On an orderly stop the holder resigns, so a standby takes over at its next attempt instead of after the TTL.</item>
/// </list>
/// </summary>
public sealed partial class LeaderElection(
    string name, TimeSpan ttl, string? holder, NpgsqlDataSource dataSource, TimeProvider time, ILogger<LeaderElection> logger)
    // Retried at the renewal pace whatever failed: a leader that cannot renew must keep trying until it steps down.
    : BackgroundLoop(logger, LoopBackoff.Between(ttl / 3, ttl / 3), time)
{
    private readonly Lock _gate = new();
    private CancellationTokenSource? _termSource;
    private LeaderTerm? _term;
    private long _renewalSent; // when the last successful claim of the term was sent (Time's timestamp)
    private TaskCompletionSource<LeaderTerm> _nextTerm = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The role elected for (one row of <c>lifeline_leaders</c>).</summary>
    public string Name { get; } = name;

    /// <summary>This instance's name as a holder.</summary>
    public string Holder { get; } = holder ?? DefaultHolder();

    /// <summary>How long a term lasts without renewal: a standby takes over within this long after the holder dies.</summary>
    public TimeSpan Ttl { get; } = ttl;

    /// <summary>How often the holder renews, and a standby tries: a third of the TTL.</summary>
    private TimeSpan Pace => Ttl / 3;

    /// <summary>A unique holder name: host, process id and a random suffix.</summary>
    public static string DefaultHolder() => $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";

    /// <summary>How long after sending a claim that succeeded the term is held here: a tenth less than it lasts in the database.</summary>
    private TimeSpan HeldFor => Ttl - Ttl / 10;

    /// <summary>
    /// The current term, or null when this instance does not hold the role — also when the term's time is up and its
    /// timer has not fired yet (a busy machine may run it late).
    /// </summary>
    public LeaderTerm? Term
    {
        get
        {
            lock (_gate)
            {
                return RunningTerm();
            }
        }
    }

    /// <summary>The term, if its time here is not up (under <see cref="_gate"/>).</summary>
    private LeaderTerm? RunningTerm() => _term is not null && Time.GetElapsedTime(_renewalSent) < HeldFor ? _term : null;

    /// <summary>Waits until this instance holds the role and returns the term.</summary>
    public async Task<LeaderTerm> WaitForTermAsync(CancellationToken ct)
    {
        Task<LeaderTerm> next;
        lock (_gate)
        {
            if (RunningTerm() is { } term)
            {
                return term;
            }
            next = _nextTerm.Task;
        }
        return await next.WaitAsync(ct);
    }

    /// <summary>Who holds the role according to the database (whether or not it is this instance), or null when it was never held.</summary>
    public Task<LeaderRecord?> ReadLeaderAsync(CancellationToken ct) => LeadershipTable.ReadAsync(dataSource, Name, ct);

    /// <summary>Takes or renews the role; each attempt may take at most one pace, so a hung one is given up in time.</summary>
    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        var current = Term;
        var sent = Time.GetTimestamp();
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        deadline.CancelAfter(Pace);
        var claimed = await LeadershipTable.ClaimAsync(dataSource, Name, Holder, current?.Term ?? 0, Ttl, deadline.Token);
        if (claimed is { } c)
        {
            Hold(c.Term, c.ElectedAt, sent);
        }
        else
        {
            EndTerm(current, "another instance holds the role");
        }
        return Pace;
    }

    /// <summary>Resigns on an orderly stop: the term ends here and in the database, and a standby takes over at once.</summary>
    protected override async Task RunLastPassAsync(CancellationToken cancellationToken)
    {
        LeaderTerm? term;
        lock (_gate)
        {
            term = _term; // resigned even when its time here is up: it may still run in the database
        }
        if (term is not null)
        {
            EndTerm(term, "shutting down");
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(Pace);
            await LeadershipTable.ResignAsync(dataSource, Name, Holder, term.Term, deadline.Token);
        }
    }

    /// <summary>Begins or extends a term claimed by a statement sent at <paramref name="sent"/>; it ends by itself unless renewed again.</summary>
    private void Hold(long term, DateTime electedAt, long sent)
    {
        LeaderTerm? ended = null;
        CancellationTokenSource? endedSource = null;
        LeaderTerm begun;
        var left = HeldFor - Time.GetElapsedTime(sent);
        if (left <= TimeSpan.Zero)
        {
            return; // the answer came too late to count; the next claim decides
        }
        lock (_gate)
        {
            _renewalSent = sent;
            if (_term is { } running && running.Term == term && _termSource is { IsCancellationRequested: false } source)
            {
                source.CancelAfter(left);
                return;
            }
            (ended, endedSource) = (_term, _termSource);
            var next = new CancellationTokenSource(Timeout.InfiniteTimeSpan, Time);
            begun = new LeaderTerm(Name, Holder, term, DateTime.SpecifyKind(electedAt, DateTimeKind.Utc), next.Token);
            next.Token.Register(() => Expired(begun));
            _termSource = next;
            _term = begun;
            _nextTerm.TrySetResult(begun);
            next.CancelAfter(left);
        }
        if (ended is not null)
        {
            LogStepDown(logger, Name, Holder, ended.Term, "a newer term began");
            endedSource?.Cancel(); // not disposed: a term's source may still be cancelled by its own timer
        }
        LogLeading(logger, Name, Holder, term);
    }

    /// <summary>The term's timer fired: it was not renewed in time.</summary>
    private void Expired(LeaderTerm term) => EndTerm(term, "its term was not renewed before it ran out");

    private void EndTerm(LeaderTerm? term, string why)
    {
        CancellationTokenSource? source;
        lock (_gate)
        {
            if (term is null || _term != term)
            {
                return;
            }
            source = _termSource;
            _term = null;
            _termSource = null;
            _nextTerm = new TaskCompletionSource<LeaderTerm>(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        LogStepDown(logger, Name, Holder, term.Term, why);
        source?.Cancel(); // runs the term's callback, which finds the term ended already
    }

    [LoggerMessage(EventId = 9301, Level = LogLevel.Information, Message = "{Holder} holds the role {Role} in term {Term}")]
    private static partial void LogLeading(ILogger logger, string role, string holder, long term);

    [LoggerMessage(EventId = 9302, Level = LogLevel.Warning, Message = "{Holder} no longer holds the role {Role} (term {Term}): {Why}")]
    private static partial void LogStepDown(ILogger logger, string role, string holder, long term, string why);
}
