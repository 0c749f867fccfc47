using Npgsql;

namespace Lifeline.Benchmarks.Measurement;

/// <summary>
/// What a phase cost the registry's PostgreSQL: the transactions that updated the tenant's <c>workers</c>
/// rows and how many rows each updated, and the WAL written (the cluster's WAL position, so every database
/// counts; nothing else writes during the registry phases).
/// </summary>
/// <param name="UpdateTransactions">Transactions that updated workers rows (each coalesced heartbeat flush is one).</param>
/// <param name="RowsUpdated">Rows those transactions updated.</param>
/// <param name="LargestTransactionRows">Rows of the largest of them.</param>
internal sealed record PostgresWrites(int UpdateTransactions, long RowsUpdated, long LargestTransactionRows, long WalBytes);

/// <summary>
/// Watches the tenant's workers rows during a phase. Every row carries the id of the transaction that last
/// wrote it (<c>xmin</c>), so polling <c>xmin, count(*)</c> every half second sees each updating
/// transaction and its row count as it commits. (The cumulative statistics views would say the same, but
/// a backend publishes them only when it goes idle, up to seconds late.)
/// </summary>
internal sealed class PostgresActivity(string connectionString, string tenant)
{
    private const string RowsByTransaction = """
        SELECT xmin::text::bigint, count(*) FROM workers WHERE tenant_id = @tenant GROUP BY 1
        """;

    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);

    /// <summary>Starts watching: transactions that wrote the rows before now are not counted.</summary>
    public async Task<Watch> StartAsync(CancellationToken ct)
    {
        var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        var watch = new Watch(connection, tenant);
        await watch.BeginAsync(ct);
        return watch;
    }

    public sealed class Watch : IAsyncDisposable
    {
        private readonly NpgsqlConnection _connection;
        private readonly string _tenant;
        private readonly HashSet<long> _before = [];
        private readonly Dictionary<long, long> _seen = [];
        private readonly CancellationTokenSource _stop = new();
        private long _walBefore;
        private Task? _polling;

        internal Watch(NpgsqlConnection connection, string tenant)
        {
            _connection = connection;
            _tenant = tenant;
        }

        internal async Task BeginAsync(CancellationToken ct)
        {
            _walBefore = await WalPositionAsync(ct);
            foreach (var (xid, _) in await PollAsync(ct))
            {
                _before.Add(xid);
            }

            _polling = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    try
                    {
                        await Task.Delay(PollInterval, _stop.Token);
                        Record(await PollAsync(_stop.Token));
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }
                }
            }, CancellationToken.None);
        }

        /// <summary>Stops watching (after one last look) and sums up what was seen.</summary>
        public async Task<PostgresWrites> StopAsync(CancellationToken ct)
        {
            await _stop.CancelAsync();
            await _polling!;
            Record(await PollAsync(ct));
            var wal = await WalPositionAsync(ct) - _walBefore;
            return new PostgresWrites(_seen.Count, _seen.Values.Sum(), _seen.Values.DefaultIfEmpty(0).Max(), wal);
        }

        private void Record(IEnumerable<(long Xid, long Rows)> rows)
        {
            foreach (var (xid, count) in rows)
            {
                if (!_before.Contains(xid))
                {
                    // A later transaction may already have taken some of its rows: the largest count seen is the best estimate.
                    _seen[xid] = Math.Max(count, _seen.GetValueOrDefault(xid));
                }
            }
        }

        private async Task<List<(long, long)>> PollAsync(CancellationToken ct)
        {
            await using var command = new NpgsqlCommand(RowsByTransaction, _connection);
            command.Parameters.AddWithValue("tenant", _tenant);
            await using var reader = await command.ExecuteReaderAsync(ct);
            var rows = new List<(long, long)>();
            while (await reader.ReadAsync(ct))
            {
                rows.Add((reader.GetInt64(0), reader.GetInt64(1)));
            }

            return rows;
        }

        private async Task<long> WalPositionAsync(CancellationToken ct)
        {
            await using var command = new NpgsqlCommand("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint", _connection);
            return (long)(await command.ExecuteScalarAsync(ct))!;
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            if (_polling is not null)
            {
                await _polling;
            }

            await _connection.DisposeAsync();
            _stop.Dispose();
        }
    }
}
