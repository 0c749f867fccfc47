using Npgsql;

namespace Lifeline.ServiceDefaults.Postgres;

/// <summary>Position in a commit-ordered log: (writing transaction id, row id). Printed as <c>xid-id</c>.</summary>
public readonly record struct LogPosition(ulong Xid, long Id) : IComparable<LogPosition>
{
    public override string ToString() => $"{Xid}-{Id}";

    public int CompareTo(LogPosition other) => Xid != other.Xid ? Xid.CompareTo(other.Xid) : Id.CompareTo(other.Id);

    public static bool TryParse(string value, out LogPosition position)
    {
        position = default;
        var dash = value.IndexOf('-', StringComparison.Ordinal);
        if (dash <= 0 || !ulong.TryParse(value.AsSpan(0, dash), out var xid) || !long.TryParse(value.AsSpan(dash + 1), out var id) || id < 0)
        {
            return false;
        }
        position = new LogPosition(xid, id);
        return true;
    }
}

/// <summary>
/// Reads an append-only table (an event log or outbox with columns <c>id</c> and <c>xid xid8 DEFAULT
/// pg_current_xact_id()</c>) in commit order. Rows are read only from transactions older than every
/// transaction still running (<c>pg_snapshot_xmin</c>), ordered by (xid, id): a row that commits late
/// can never be skipped, and a reader can resume from any position it saw.
/// </summary>
public sealed class CommitOrderedLog(NpgsqlDataSource dataSource, string table)
{
    /// <summary>The position before everything that may still commit ("from now on").</summary>
    public async Task<LogPosition> HorizonAsync(CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint");
        var xmin = (long)(await command.ExecuteScalarAsync(ct))!;
        return new LogPosition((ulong)xmin - 1, long.MaxValue);
    }

    /// <summary>
    /// Reads up to <paramref name="limit"/> rows after <paramref name="after"/> matching <paramref name="filter"/>
    /// (an SQL condition over the table's columns, parameters added by <paramref name="addParameters"/>).
    /// <paramref name="columns"/> is the select list; <paramref name="read"/> maps a row and must return its
    /// position. Returns the rows and the position to continue from, which moves past filtered-out rows too.
    /// </summary>
    public async Task<(IReadOnlyList<T> Rows, LogPosition Next)> ReadAsync<T>(
        LogPosition after, string columns, string filter, Action<NpgsqlParameterCollection> addParameters,
        Func<NpgsqlDataReader, (T Row, LogPosition Position)> read, int limit, CancellationToken ct)
    {
        // Every row of a transaction older than this horizon is visible to the read below.
        var horizon = await HorizonAsync(ct);
        var rows = new List<T>();
        var next = after;
        await using (var command = dataSource.CreateCommand($"""
            SELECT {columns} FROM {table}
            WHERE (xid, id) > (@after_xid::text::xid8, @after_id)
              AND xid < pg_snapshot_xmin(pg_current_snapshot())
              AND ({filter})
            ORDER BY xid, id
            LIMIT @limit
            """))
        {
            command.Parameters.AddWithValue("after_xid", after.Xid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            command.Parameters.AddWithValue("after_id", after.Id);
            command.Parameters.AddWithValue("limit", limit);
            addParameters(command.Parameters);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                var (row, position) = read(reader);
                rows.Add(row);
                next = position;
            }
        }
        if (rows.Count < limit && horizon.CompareTo(next) > 0)
        {
            // Nothing more before the horizon: skip past rows the filter left out.
            next = horizon;
        }
        return (rows, next);
    }
}
