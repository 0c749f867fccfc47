using Lifeline.Backup.Targets;
using Lifeline.ServiceDefaults.Errors;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;
using NpgsqlTypes;

namespace Lifeline.Backup.Engine;

/// <summary>
/// The change source: PostgreSQL logical decoding (pgoutput) through Npgsql's replication protocol.
/// <para>
/// A full backup creates the chain's slot with an exported snapshot; pg_dump and the checksums read that
/// snapshot, so the dump and the slot's start agree exactly. A change backup ends at a point it fixes by
/// creating a temporary slot (another exported snapshot, at LSN <c>L</c>): it records the checksums in that
/// snapshot, emits a logical message as an end marker, and streams the chain's slot from the previous
/// backup's end, keeping exactly the transactions that committed before <c>L</c>. The slot is confirmed to
/// <c>L</c> only after the file is durable and cataloged, so an interrupted backup loses nothing.
/// </para>
/// </summary>
public static class ChangeCapture
{
    private const string MarkerPrefix = "lifeline_backup";

    /// <summary>
    /// Creating a logical slot waits until every transaction running in the whole cluster has ended (the snapshot
    /// builder needs a consistent point), so replication commands have no timeout of their own: cancellation ends them.
    /// </summary>
    private static string ReplicationConnectionString(BackupTarget target) =>
        new NpgsqlConnectionStringBuilder(target.ConnectionStringFor(target.Database)) { CommandTimeout = 0 }.ConnectionString;

    public static long ToLong(NpgsqlLogSequenceNumber lsn) => unchecked((long)(ulong)lsn);

    public static NpgsqlLogSequenceNumber ToLsn(long value) => new(unchecked((ulong)value));

    /// <summary>Creates the chain slot of a new full backup; keep the result open while its snapshot is read.</summary>
    public static async Task<SlotSnapshot> CreateChainSlotAsync(BackupTarget target, string slotName, CancellationToken ct)
    {
        var replication = new LogicalReplicationConnection(ReplicationConnectionString(target));
        try
        {
            await replication.Open(ct);
            var slot = await replication.CreatePgOutputReplicationSlot(slotName, temporarySlot: false,
                slotSnapshotInitMode: LogicalSlotSnapshotInitMode.Export, cancellationToken: ct);
            return new SlotSnapshot(replication, slot.SnapshotName!, ToLong(slot.ConsistentPoint));
        }
        catch
        {
            await replication.DisposeAsync();
            throw;
        }
    }

    /// <summary>Drops this target's chain slots other than <paramref name="keep"/> (older chains, failed fulls).</summary>
    public static async Task DropOtherSlotsAsync(NpgsqlConnection connection, BackupTarget target, string? keep, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("""
            SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
            WHERE slot_name LIKE @prefix || '%' AND slot_name IS DISTINCT FROM @keep AND NOT active AND NOT temporary
            """, connection);
        command.Parameters.AddWithValue("prefix", target.SlotPrefix);
        command.Parameters.AddWithValue("keep", (object?)keep ?? DBNull.Value);
        await command.ExecuteNonQueryAsync(ct);
    }

    /// <summary>The chain's slot must exist and must not have been consumed past the chain's latest backup.</summary>
    public static async Task CheckSlotAsync(NpgsqlConnection sql, string slotName, long fromLsn, CancellationToken ct)
    {
        await using (var check = new NpgsqlCommand(
            "SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE slot_name = @s AND database = current_database()", sql))
        {
            check.Parameters.AddWithValue("s", slotName);
            await using var reader = await check.ExecuteReaderAsync(ct);
            if (!await reader.ReadAsync(ct))
            {
                throw new PreconditionFailedException("CHANGE_SLOT_MISSING",
                    $"The replication slot of this target's backup chain ({slotName}) no longer exists (the database was restored or the slot dropped); take a full backup.");
            }
            var confirmed = ToLong(NpgsqlLogSequenceNumber.Parse(reader.GetString(0)));
            if (confirmed > fromLsn)
            {
                throw new PreconditionFailedException("CHANGE_HISTORY_GAP",
                    $"The change stream was consumed past the latest backup of this chain (slot at {reader.GetString(0)}, chain ends at {ToLsn(fromLsn)}); take a full backup.");
            }
        }

    }

    /// <summary>
    /// Streams the chain slot's changes committed in [<paramref name="fromLsn"/>, L) into <paramref name="output"/>
    /// as SQL lines, where L is fixed at the start; <paramref name="readState"/> runs in the snapshot at L.
    /// </summary>
    public static async Task<ChangeSession> CaptureAsync(BackupTarget target, string slotName, long fromLsn,
        TextWriter output, Func<NpgsqlConnection, NpgsqlTransaction, Task<DatabaseState>> readState,
        Func<long, Task> onChange, CancellationToken ct)
    {
        await using var sql = new NpgsqlConnection(target.ConnectionStringFor(target.Database));
        await sql.OpenAsync(ct);

        await CheckSlotAsync(sql, slotName, fromLsn, ct);

        // Fix the end point L: a temporary slot's exported snapshot shows exactly the transactions committed before L.
        long endLsn;
        DatabaseState state;
        await using (var pointer = new LogicalReplicationConnection(ReplicationConnectionString(target)))
        {
            await pointer.Open(ct);
            var temp = await pointer.CreatePgOutputReplicationSlot($"{slotName[..Math.Min(slotName.Length, 40)]}_t{Guid.NewGuid():N}"[..60],
                temporarySlot: true, slotSnapshotInitMode: LogicalSlotSnapshotInitMode.Export, cancellationToken: ct);
            endLsn = ToLong(temp.ConsistentPoint);
            await using var tx = await sql.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct);
            await using (var import = new NpgsqlCommand($"SET TRANSACTION SNAPSHOT '{temp.SnapshotName}'", sql, tx))
            {
                await import.ExecuteNonQueryAsync(ct);
            }
            state = await readState(sql, tx);
            await tx.CommitAsync(ct);
        }

        // Everything before L is streamed before this marker (commit order), so seeing it means the range is complete.
        var marker = Guid.NewGuid().ToString("N");
        await using (var emit = new NpgsqlCommand("SELECT pg_logical_emit_message(true, @p, @m)", sql))
        {
            emit.Parameters.AddWithValue("p", MarkerPrefix);
            emit.Parameters.AddWithValue("m", marker);
            await emit.ExecuteNonQueryAsync(ct);
        }

        var identityAlways = new Dictionary<uint, IReadOnlySet<string>>();
        var replication = new LogicalReplicationConnection(ReplicationConnectionString(target));
        IAsyncEnumerator<PgOutputReplicationMessage>? stream = null;
        try
        {
            await replication.Open(ct);
            var options = new PgOutputReplicationOptions(DatabaseInspector.Publication, PgOutputProtocolVersion.V1, binary: false, messages: true);
            stream = replication.StartReplication(new PgOutputReplicationSlot(slotName), options, ct, ToLsn(fromLsn)).GetAsyncEnumerator(ct);
            var relations = new Dictionary<uint, ChangeRelation>();
            var include = false;
            long changes = 0;
            while (true)
            {
                if (!await stream.MoveNextAsync())
                {
                    throw new InvalidOperationException("The replication stream ended before the end marker.");
                }
                switch (stream.Current)
                {
                    case BeginMessage begin:
                        var commit = ToLong(begin.TransactionFinalLsn);
                        include = commit >= fromLsn && commit < endLsn;
                        break;
                    case RelationMessage relation:
                        relations[relation.RelationId] = await DescribeAsync(sql, relation, identityAlways, ct);
                        break;
                    case InsertMessage insert when include:
                        await output.WriteLineAsync(ChangeSql.Insert(relations[insert.Relation.RelationId], await ReadAsync(insert.NewRow, ct)));
                        await onChange(++changes);
                        break;
                    case FullUpdateMessage update when include:
                        {
                            var old = await ReadAsync(update.OldRow, ct);
                            await output.WriteLineAsync(ChangeSql.Update(relations[update.Relation.RelationId], old, await ReadAsync(update.NewRow, ct)));
                            await onChange(++changes);
                            break;
                        }
                    case IndexUpdateMessage update when include:
                        {
                            var key = await ReadAsync(update.Key, ct);
                            await output.WriteLineAsync(ChangeSql.Update(relations[update.Relation.RelationId], key, await ReadAsync(update.NewRow, ct)));
                            await onChange(++changes);
                            break;
                        }
                    case DefaultUpdateMessage update when include:
                        await output.WriteLineAsync(ChangeSql.Update(relations[update.Relation.RelationId], null, await ReadAsync(update.NewRow, ct)));
                        await onChange(++changes);
                        break;
                    case FullDeleteMessage delete when include:
                        await output.WriteLineAsync(ChangeSql.Delete(relations[delete.Relation.RelationId], await ReadAsync(delete.OldRow, ct)));
                        await onChange(++changes);
                        break;
                    case KeyDeleteMessage delete when include:
                        await output.WriteLineAsync(ChangeSql.Delete(relations[delete.Relation.RelationId], await ReadAsync(delete.Key, ct)));
                        await onChange(++changes);
                        break;
                    case TruncateMessage truncate when include:
                        await output.WriteLineAsync(ChangeSql.Truncate(
                            truncate.Relations.Select(r => relations.TryGetValue(r.RelationId, out var known) ? known
                                : new ChangeRelation(r.Namespace, r.RelationName, [], [], false, new HashSet<string>())),
                            truncate.Options.HasFlag(TruncateMessage.TruncateOptions.RestartIdentity),
                            truncate.Options.HasFlag(TruncateMessage.TruncateOptions.Cascade)));
                        await onChange(++changes);
                        break;
                    case LogicalDecodingMessage message when message.Prefix == MarkerPrefix:
                        if (System.Text.Encoding.UTF8.GetString(await ReadAllAsync(message.Data, ct)) == marker)
                        {
                            await output.FlushAsync(ct);
                            return new ChangeSession(replication, stream, target.ConnectionStringFor(target.Database), slotName, endLsn, changes, state);
                        }
                        break;
                }
            }
        }
        catch
        {
            if (stream is not null)
            {
                await stream.DisposeAsync();
            }
            await replication.DisposeAsync();
            throw;
        }
    }

    private static async Task<byte[]> ReadAllAsync(Stream data, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        await data.CopyToAsync(buffer, ct);
        return buffer.ToArray();
    }

    private static async Task<IReadOnlyList<ChangeValue>> ReadAsync(ReplicationTuple tuple, CancellationToken ct)
    {
        var values = new List<ChangeValue>(tuple.NumColumns);
        await foreach (var value in tuple.WithCancellation(ct))
        {
            if (value.IsDBNull)
            {
                values.Add(ChangeValue.Null);
            }
            else if (value.IsUnchangedToastedValue)
            {
                values.Add(ChangeValue.NotChanged);
            }
            else
            {
                using var reader = value.GetTextReader();
                values.Add(new ChangeValue(await reader.ReadToEndAsync(ct), false));
            }
        }
        return values;
    }

    private static async Task<ChangeRelation> DescribeAsync(NpgsqlConnection sql, RelationMessage relation,
        Dictionary<uint, IReadOnlySet<string>> identityAlways, CancellationToken ct)
    {
        if (!identityAlways.TryGetValue(relation.RelationId, out var always))
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            await using var command = new NpgsqlCommand("SELECT attname FROM pg_attribute WHERE attrelid = @oid AND attidentity = 'a'", sql);
            command.Parameters.AddWithValue("oid", NpgsqlDbType.Oid, relation.RelationId);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                names.Add(reader.GetString(0));
            }
            identityAlways[relation.RelationId] = always = names;
        }
        return new ChangeRelation(relation.Namespace, relation.RelationName,
            relation.Columns.Select(c => c.ColumnName).ToArray(),
            relation.Columns.Select(c => c.Flags.HasFlag(RelationMessage.Column.ColumnFlags.PartOfKey)).ToArray(),
            relation.ReplicaIdentity == RelationMessage.ReplicaIdentitySetting.AllColumns,
            always);
    }
}

/// <summary>An exported snapshot, valid while this stays open.</summary>
public sealed class SlotSnapshot(LogicalReplicationConnection connection, string snapshotName, long lsn) : IAsyncDisposable
{
    public string SnapshotName { get; } = snapshotName;
    public long Lsn { get; } = lsn;

    public ValueTask DisposeAsync() => connection.DisposeAsync();
}

/// <summary>
/// A captured change range, its replication stream still open: <see cref="ConfirmAsync"/> advances the slot
/// to its end once the backup is durable and cataloged; disposing without confirming leaves the slot where it was.
/// </summary>
public sealed class ChangeSession(LogicalReplicationConnection replication, IAsyncEnumerator<PgOutputReplicationMessage> stream,
    string sqlConnectionString, string slotName, long endLsn, long changeCount, DatabaseState state) : IAsyncDisposable
{
    public long EndLsn { get; } = endLsn;
    public long ChangeCount { get; } = changeCount;
    public DatabaseState State { get; } = state;

    /// <summary>Confirms the range as consumed and waits until the server's slot shows it.</summary>
    public async Task ConfirmAsync(TimeSpan timeout, CancellationToken ct)
    {
        replication.SetReplicationStatus(ChangeCapture.ToLsn(EndLsn));
        await replication.SendStatusUpdate(ct);
        await using var sql = new NpgsqlConnection(sqlConnectionString);
        await sql.OpenAsync(ct);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            await using var command = new NpgsqlCommand(
                "SELECT confirmed_flush_lsn >= @l::pg_lsn FROM pg_replication_slots WHERE slot_name = @s", sql);
            command.Parameters.AddWithValue("l", ChangeCapture.ToLsn(EndLsn).ToString());
            command.Parameters.AddWithValue("s", slotName);
            if (await command.ExecuteScalarAsync(ct) is true || DateTime.UtcNow > deadline)
            {
                return;
            }
            await Task.Delay(20, ct);
            await replication.SendStatusUpdate(ct);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await stream.DisposeAsync();
        }
        catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or InvalidOperationException)
        {
            // ending the stream of a broken connection
        }
        await replication.DisposeAsync();
    }
}
