using System.Security.Cryptography;
using System.Text;
using Lifeline.Backup.Catalog;
using Npgsql;

namespace Lifeline.Backup.Engine;

/// <summary>What holds, or wants, a target's lock.</summary>
public enum TargetOperation
{
    Backup,
    Restore,
    Retention,
    Deletion,
}

/// <summary>
/// One backup, restore, retention or deletion of a target at a time, across every instance: a session advisory lock in
/// the catalog database, held on its own connection for the operation's duration. A crashed holder's lock goes with its
/// connection, which is how the sweep recognises abandoned <c>running</c> rows. (A mutex around one operation, not a
/// role: singletons such as the scheduler are elected with <c>LeaderElection</c> instead. It stays a session lock rather
/// than a row claim because its holder's death must free it at once, and <c>pg_locks</c> names the holder.)
/// <para>
/// A holder labels its lock connection (<c>application_name</c>) with its operation before it takes the lock, so a
/// caller that finds the target taken learns from <c>pg_locks</c> and <c>pg_stat_activity</c> what really holds it —
/// not a guess from the catalog, which named a backup when another retention held the target or when the holder had
/// already let go. Retention and deletion hold a target briefly: others wait for them (up to
/// <see cref="ShortHolderWait"/>); a running backup or restore is reported at once.
/// </para>
/// </summary>
public sealed class TargetLocks(NpgsqlDataSource catalog)
{
    /// <summary>How long an operation waits for a retention or deletion of the target to finish.</summary>
    public static readonly TimeSpan ShortHolderWait = TimeSpan.FromSeconds(10);

    private const int LockClass = 0x4c42; // "LB": Lifeline backup
    private const string LabelPrefix = "lifeline-backup:";
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(25);

    private const string HolderCondition = """
        l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND l.classid = @c::int4::oid AND l.objid::bigint = (@k::bigint & 4294967295) AND l.objsubid = 2
        """;

    /// <summary>
    /// The target's lock for <paramref name="operation"/>. When another operation holds it: waits while that is a
    /// retention or deletion (they are short), tries again at once when the holder let go meanwhile, and otherwise
    /// refuses with ABORTED naming the operation that holds the target (<c>BACKUP_IN_PROGRESS</c>,
    /// <c>RESTORE_IN_PROGRESS</c>, <c>RETENTION_IN_PROGRESS</c>, <c>DELETION_IN_PROGRESS</c>).
    /// </summary>
    public async Task<TargetLock> AcquireAsync(string target, TargetOperation operation, CancellationToken ct)
    {
        var waitUntil = DateTime.UtcNow + ShortHolderWait;
        var letGo = false;
        while (true)
        {
            if (await TryAcquireAsync(target, operation, ct) is { } held)
            {
                return held;
            }
            var holder = await HolderAsync(target, ct);
            var worthWaiting = holder is null or TargetOperation.Retention or TargetOperation.Deletion;
            if (!worthWaiting || DateTime.UtcNow >= waitUntil)
            {
                throw Busy(target, holder);
            }
            // Let go meanwhile (null): again at once, the first time; a short holder: in a moment.
            if (holder is not null || letGo)
            {
                await Task.Delay(RetryDelay, ct);
            }
            letGo |= holder is null;
        }
    }

    /// <summary>The lock, or null when another operation holds it.</summary>
    public async Task<TargetLock?> TryAcquireAsync(string target, TargetOperation operation, CancellationToken ct)
    {
        var connection = await catalog.OpenConnectionAsync(ct);
        try
        {
            // Labelled before the lock is taken: whoever sees this session hold the lock sees what it is for.
            await using (var label = new NpgsqlCommand("SELECT set_config('application_name', @label, false)", connection))
            {
                label.Parameters.AddWithValue("label", LabelPrefix + Name(operation));
                await label.ExecuteScalarAsync(ct);
            }
            await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock(@c, @k)", connection);
            command.Parameters.AddWithValue("c", LockClass);
            command.Parameters.AddWithValue("k", KeyOf(target));
            if ((bool)(await command.ExecuteScalarAsync(ct))!)
            {
                return new TargetLock(connection, target);
            }
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
        await connection.DisposeAsync();
        return null;
    }

    /// <summary>What holds the target's lock now; null when nobody does (or the holder is not one of ours).</summary>
    public async Task<TargetOperation?> HolderAsync(string target, CancellationToken ct)
    {
        await using var command = catalog.CreateCommand($"""
            SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE {HolderCondition}
            """);
        command.Parameters.AddWithValue("c", LockClass);
        command.Parameters.AddWithValue("k", KeyOf(target));
        var label = await command.ExecuteScalarAsync(ct) as string;
        return label is not null && label.StartsWith(LabelPrefix, StringComparison.Ordinal)
            && Enum.TryParse<TargetOperation>(label[LabelPrefix.Length..], ignoreCase: true, out var operation)
            ? operation
            : null;
    }

    /// <summary>Whether any session holds the target's lock (read from pg_locks: looking takes no lock).</summary>
    public async Task<bool> IsHeldAsync(string target, CancellationToken ct)
    {
        await using var command = catalog.CreateCommand($"SELECT EXISTS (SELECT 1 FROM pg_locks l WHERE {HolderCondition})");
        command.Parameters.AddWithValue("c", LockClass);
        command.Parameters.AddWithValue("k", KeyOf(target));
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }

    private static TargetBusyException Busy(string target, TargetOperation? holder)
    {
        var e = holder switch
        {
            TargetOperation.Backup => new TargetBusyException("BACKUP_IN_PROGRESS", $"A backup of target '{target}' is running; try again when it has finished."),
            TargetOperation.Restore => new TargetBusyException("RESTORE_IN_PROGRESS", $"A restore of target '{target}' is running; try again when it has finished."),
            TargetOperation.Retention => new TargetBusyException("RETENTION_IN_PROGRESS",
                $"A retention of target '{target}' has held it for longer than {ShortHolderWait.TotalSeconds:0} s; try again shortly."),
            TargetOperation.Deletion => new TargetBusyException("DELETION_IN_PROGRESS",
                $"A deletion of backups of target '{target}' has held it for longer than {ShortHolderWait.TotalSeconds:0} s; try again shortly."),
            _ => new TargetBusyException("TARGET_BUSY", $"Another operation on target '{target}' kept it for longer than {ShortHolderWait.TotalSeconds:0} s; try again shortly."),
        };
        e.Metadata["target"] = target;
        if (holder is { } h)
        {
            e.Metadata["operation"] = Name(h);
        }
        return e;
    }

    private static string Name(TargetOperation operation) => operation.ToString().ToLowerInvariant();

    private static int KeyOf(string target) => BitConverter.ToInt32(SHA256.HashData(Encoding.UTF8.GetBytes(target)), 0);

    public sealed class TargetLock(NpgsqlConnection connection, string target) : IAsyncDisposable
    {
        public string Target { get; } = target;

        public async ValueTask DisposeAsync()
        {
            try
            {
                await using var command = new NpgsqlCommand("SELECT pg_advisory_unlock(@c, @k)", connection);
                command.Parameters.AddWithValue("c", LockClass);
                command.Parameters.AddWithValue("k", KeyOf(Target));
                await command.ExecuteScalarAsync(CancellationToken.None);
            }
            catch (NpgsqlException)
            {
                // The connection is broken: the server released the lock with the session.
            }
            await connection.DisposeAsync();
        }
    }
}
