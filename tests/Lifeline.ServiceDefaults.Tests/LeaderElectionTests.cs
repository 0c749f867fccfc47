using System.Collections.Concurrent;
using System.Diagnostics;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.Testing;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Lifeline.ServiceDefaults.Tests;

/// <summary>
/// The leader election against a real PostgreSQL: electors race for one role on one database, each on its own data
/// source as separate instances would be; what they may write is checked in the store through the term fence.
/// </summary>
public sealed class LeaderElectionTests : IAsyncLifetime
{
    private const string Role = "test-role";

    private PostgresServer postgres = null!;
    private string database = null!;
    private NpgsqlDataSource store = null!;
    private readonly List<(LeaderElection Election, NpgsqlDataSource DataSource)> electors = [];

    public async Task InitializeAsync()
    {
        postgres = await PostgresServer.GetAsync();
        database = await postgres.CreateDatabaseAsync("leaders");
        store = NpgsqlDataSource.Create(database);
        await using var connection = await store.OpenConnectionAsync();
        await LeadershipTable.EnsureAsync(connection, CancellationToken.None);
        await LeadershipTable.EnsureAsync(connection, CancellationToken.None); // idempotent, as every migrator runs it
        await using var writes = new NpgsqlCommand(
            "CREATE TABLE fenced_writes (seq bigserial PRIMARY KEY, holder text NOT NULL, term bigint NOT NULL)", connection);
        await writes.ExecuteNonQueryAsync();
    }

    public async Task DisposeAsync()
    {
        foreach (var (election, dataSource) in electors)
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await election.StopAsync(stop.Token);
            election.Dispose();
            await dataSource.DisposeAsync();
        }
        await store.DisposeAsync();
        await postgres.DropDatabaseAsync(database);
    }

    private async Task<LeaderElection> StartElectorAsync(string holder, TimeSpan ttl, string? connectionString = null)
    {
        var dataSource = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(connectionString ?? database)
        {
            Timeout = 3, CancellationTimeout = 500, Pooling = true,
        }.ConnectionString);
        var election = new LeaderElection(Role, ttl, holder, dataSource, TimeProvider.System, NullLogger<LeaderElection>.Instance);
        electors.Add((election, dataSource));
        await election.StartAsync(CancellationToken.None);
        return election;
    }

    private static async Task StopAsync(LeaderElection election)
    {
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await election.StopAsync(stop.Token);
    }

    /// <summary>A write fenced by <paramref name="term"/>; true when it was recorded.</summary>
    private async Task<bool> FencedWriteAsync(LeaderTerm term)
    {
        await using var command = store.CreateCommand($"INSERT INTO fenced_writes (holder, term) SELECT @holder, @term WHERE {LeaderTerm.Fence}");
        command.Parameters.AddWithValue("holder", term.Holder);
        command.Parameters.AddWithValue("term", term.Term);
        term.AddFenceParameters(command.Parameters);
        return await command.ExecuteNonQueryAsync() == 1;
    }

    private static async Task<LeaderTerm> TermOfAsync(LeaderElection election, double seconds = 10)
    {
        using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        return await election.WaitForTermAsync(wait.Token);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Racing_electors_never_lead_at_once_terms_only_grow_and_only_the_running_term_writes()
    {
        var ttl = TimeSpan.FromMilliseconds(900);
        var started = new List<LeaderElection>();
        for (var i = 0; i < 5; i++)
        {
            started.Add(await StartElectorAsync($"elector-{i}", ttl));
        }
        var live = started.ToArray(); // replaced, never changed, so the writers and the sampler can read it while it churns

        var samples = 0;
        var withLeader = 0;
        var violations = new ConcurrentBag<string>();
        var terms = new ConcurrentDictionary<long, string>();
        var attempted = 0;
        using var run = new CancellationTokenSource(TimeSpan.FromSeconds(8));

        // Every elector writes as fast as it can while it believes it leads (stale terms included: the fence decides).
        var writers = Enumerable.Range(0, 3).Select(_ => Task.Run(async () =>
        {
            while (!run.IsCancellationRequested)
            {
                foreach (var election in Volatile.Read(ref live))
                {
                    if (election.Term is { } term)
                    {
                        terms.AddOrUpdate(term.Term, term.Holder, (t, h) =>
                        {
                            if (h != term.Holder)
                            {
                                violations.Add($"term {t} held by {h} and {term.Holder}");
                            }
                            return h;
                        });
                        Interlocked.Increment(ref attempted);
                        await FencedWriteAsync(term);
                    }
                }
                await Task.Delay(5);
            }
        })).ToList();

        // The local view: at no moment do two electors report a term. One look reads the electors one after the other,
        // so it is read twice: two terms (the same objects) seen in both looks overlapped in time.
        var sampler = Task.Run(async () =>
        {
            while (!run.IsCancellationRequested)
            {
                var electorsNow = Volatile.Read(ref live);
                var first = electorsNow.Select(e => e.Term).ToArray();
                var second = electorsNow.Select(e => e.Term).ToArray();
                var both = first.Where((t, i) => t is not null && ReferenceEquals(t, second[i])).ToList();
                Interlocked.Increment(ref samples);
                if (both.Count > 1)
                {
                    violations.Add($"{both.Count} leaders at once: {string.Join(", ", both.Select(t => $"{t!.Holder}/{t.Term}"))}");
                }
                if (first.Count(t => t is not null) == 1)
                {
                    Interlocked.Increment(ref withLeader);
                }
                await Task.Delay(2);
            }
        });

        // Churn: the leader resigns (an orderly stop) and a fresh instance joins, again and again.
        var handovers = 0;
        var joined = 5;
        while (!run.IsCancellationRequested)
        {
            await Task.Delay(600);
            var leader = live.FirstOrDefault(e => e.Term is not null);
            if (leader is null || run.IsCancellationRequested)
            {
                continue;
            }
            await StopAsync(leader);
            var joiner = await StartElectorAsync($"elector-{joined++}", ttl);
            Volatile.Write(ref live, [.. live.Where(e => e != leader), joiner]);
            handovers++;
        }
        await Task.WhenAll(writers.Append(sampler));

        Assert.Empty(violations);
        Assert.True(handovers >= 5, $"only {handovers} handovers");
        Assert.True(withLeader > samples / 2, $"a leader in only {withLeader} of {samples} samples");

        // The store: accepted writes come term after term, never back to an older one; each term has one holder.
        var accepted = new List<(string Holder, long Term)>();
        await using (var read = store.CreateCommand("SELECT holder, term FROM fenced_writes ORDER BY seq"))
        await using (var reader = await read.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                accepted.Add((reader.GetString(0), reader.GetInt64(1)));
            }
        }
        Assert.True(accepted.Count > 100, $"only {accepted.Count} writes accepted of {attempted}");
        for (var i = 1; i < accepted.Count; i++)
        {
            Assert.True(accepted[i].Term >= accepted[i - 1].Term, $"write {i} of term {accepted[i].Term} after one of term {accepted[i - 1].Term}");
        }
        foreach (var term in accepted.GroupBy(a => a.Term))
        {
            Assert.Single(term.Select(a => a.Holder).Distinct());
        }
        Assert.True(accepted.Select(a => a.Term).Distinct().Count() > handovers / 2);
        var (_, lastTerm) = accepted[^1];
        Assert.True(await ScalarAsync<long>("SELECT term FROM lifeline_leaders WHERE name = @name") >= lastTerm);
        Assert.True(terms.Keys.Max() >= handovers, $"terms reached {terms.Keys.Max()} after {handovers} handovers");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_paused_leaders_fenced_write_is_refused_once_its_term_expired_and_after_a_successor_was_elected()
    {
        var ttl = TimeSpan.FromMilliseconds(700);
        // "a" takes the role and then pauses: it never renews.
        var a = await LeadershipTable.ClaimAsync(store, Role, "a", 0, ttl, CancellationToken.None);
        Assert.NotNull(a);
        var paused = new LeaderTerm(Role, "a", a.Value.Term, a.Value.ElectedAt, CancellationToken.None);
        Assert.Null(await LeadershipTable.ClaimAsync(store, Role, "b", 0, ttl, CancellationToken.None)); // "a" holds it
        Assert.True(await FencedWriteAsync(paused));

        await Task.Delay(ttl + TimeSpan.FromMilliseconds(200));
        Assert.False(await FencedWriteAsync(paused)); // expired, nobody elected yet: still refused

        var b = await LeadershipTable.ClaimAsync(store, Role, "b", 0, ttl, CancellationToken.None);
        Assert.NotNull(b);
        Assert.Equal(paused.Term + 1, b.Value.Term);
        var successor = new LeaderTerm(Role, "b", b.Value.Term, b.Value.ElectedAt, CancellationToken.None);
        Assert.False(await FencedWriteAsync(paused));
        Assert.False(await FencedWriteAsync(paused with { Term = successor.Term })); // the term is the holder's, not anyone's
        Assert.True(await FencedWriteAsync(successor));
        // "a" wakes and claims again: it does not get its old term back, and "b"'s term keeps running.
        Assert.Null(await LeadershipTable.ClaimAsync(store, Role, "a", paused.Term, ttl, CancellationToken.None));
        Assert.False(await FencedWriteAsync(paused));

        Assert.Equal(new[] { ("a", paused.Term), ("b", successor.Term) }, await WritesAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_fenced_write_in_flight_holds_off_the_successor_until_it_commits()
    {
        var ttl = TimeSpan.FromMilliseconds(500);
        var a = await LeadershipTable.ClaimAsync(store, Role, "a", 0, ttl, CancellationToken.None);
        var term = new LeaderTerm(Role, "a", a!.Value.Term, a.Value.ElectedAt, CancellationToken.None);

        // "a" checks its term in a transaction that stays open past the term's end.
        await using var connection = await store.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        Assert.True(await term.HoldsAsync(connection, tx, CancellationToken.None));
        await Task.Delay(ttl + TimeSpan.FromMilliseconds(200));

        var claim = LeadershipTable.ClaimAsync(store, Role, "b", 0, ttl, CancellationToken.None);
        await Task.Delay(300);
        Assert.False(claim.IsCompleted); // the successor's election waits for the fenced transaction
        await using (var write = new NpgsqlCommand("INSERT INTO fenced_writes (holder, term) VALUES ('a', @term)", connection, tx))
        {
            write.Parameters.AddWithValue("term", term.Term);
            await write.ExecuteNonQueryAsync();
        }
        await tx.CommitAsync();
        var b = await claim.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(term.Term + 1, b!.Value.Term);
        Assert.False(await FencedWriteAsync(term));
        Assert.Equal(new[] { ("a", term.Term) }, await WritesAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_resigning_leader_hands_over_at_once_not_after_its_ttl()
    {
        var ttl = TimeSpan.FromSeconds(6);
        var first = await StartElectorAsync("first", ttl);
        var firstTerm = await TermOfAsync(first);
        var second = await StartElectorAsync("second", ttl);
        await Task.Delay(ttl / 3 + TimeSpan.FromMilliseconds(300)); // the standby has tried and lost at least once
        Assert.Null(second.Term);

        var stopped = Stopwatch.StartNew();
        await StopAsync(first);
        Assert.True(firstTerm.Lost.IsCancellationRequested);
        Assert.Null(first.Term);
        var secondTerm = await TermOfAsync(second);
        var handover = stopped.Elapsed;
        Assert.True(handover < ttl / 3 + TimeSpan.FromSeconds(1), $"took over after {handover.TotalSeconds:0.00} s (TTL {ttl.TotalSeconds} s)");
        Assert.Equal(firstTerm.Term + 1, secondTerm.Term);
        Assert.False(await FencedWriteAsync(firstTerm));
        Assert.True(await FencedWriteAsync(secondTerm));
        Assert.Equal("second", await ScalarAsync<string>("SELECT holder FROM lifeline_leaders WHERE name = @name"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_leader_whose_database_connection_dies_steps_down_before_its_term_ends_and_a_standby_takes_over()
    {
        var ttl = TimeSpan.FromSeconds(3);
        await using var proxy = FaultProxy.Start(new NpgsqlConnectionStringBuilder(database).Port);
        var cut = await StartElectorAsync("cut-off", ttl, proxy.Npgsql(database));
        var cutTerm = await TermOfAsync(cut);
        var standby = await StartElectorAsync("standby", ttl);
        await Task.Delay(ttl / 3 + TimeSpan.FromMilliseconds(300)); // renewed at least once through the proxy
        Assert.Equal(cutTerm, cut.Term);

        var lostAt = new TaskCompletionSource<(TimeSpan After, DateTime At)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var clock = Stopwatch.StartNew();
        proxy.BlackHole(true); // renewals hang: no answer, no error
        using var registration = cutTerm.Lost.Register(() => lostAt.TrySetResult((clock.Elapsed, DateTime.UtcNow)));
        var steppedDown = await lostAt.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(steppedDown.After < ttl, $"stepped down {steppedDown.After.TotalSeconds:0.00} s after the cut (TTL {ttl.TotalSeconds} s)");
        Assert.Null(cut.Term);

        var standbyTerm = await TermOfAsync(standby);
        Assert.True(standbyTerm.Since > steppedDown.At,
            $"the standby was elected at {standbyTerm.Since:HH:mm:ss.fff}, before the cut-off leader stepped down at {steppedDown.At:HH:mm:ss.fff}");
        Assert.Equal(cutTerm.Term + 1, standbyTerm.Term);
        Assert.False(await FencedWriteAsync(cutTerm));
        Assert.True(await FencedWriteAsync(standbyTerm));
        Assert.Null(cut.Term); // still cut off: it cannot lead again
        proxy.BlackHole(false);
    }

    private async Task<T> ScalarAsync<T>(string sql)
    {
        await using var command = store.CreateCommand(sql);
        command.Parameters.AddWithValue("name", Role);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    private async Task<(string, long)[]> WritesAsync()
    {
        var rows = new List<(string, long)>();
        await using var command = store.CreateCommand("SELECT holder, term FROM fenced_writes ORDER BY seq");
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            rows.Add((reader.GetString(0), reader.GetInt64(1)));
        }
        return [.. rows];
    }
}
