using System.Security.Cryptography;
using System.Text;
using Npgsql;

namespace Lifeline.Backup.Engine;

/// <summary>
/// One backup or restore of a target at a time, across every instance: a session advisory lock in the
/// catalog database, held on its own connection for the operation's duration. A crashed holder's lock
/// goes with its connection, which is how the sweep recognises abandoned <c>running</c> rows.
/// </summary>
public sealed class TargetLocks(NpgsqlDataSource catalog)
{
    private const int LockClass = 0x4c42; // "LB": Lifeline backup

    /// <summary>The lock, or null when another operation holds it.</summary>
    public async Task<TargetLock?> TryAcquireAsync(string target, CancellationToken ct)
    {
        var connection = await catalog.OpenConnectionAsync(ct);
        try
        {
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

    /// <summary>Whether any session holds the target's lock (read from pg_locks: looking takes no lock).</summary>
    public async Task<bool> IsHeldAsync(string target, CancellationToken ct)
    {
        await using var command = catalog.CreateCommand("""
            SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                           AND classid = @c::int4::oid AND objid::bigint = (@k::bigint & 4294967295) AND objsubid = 2)
            """);
        command.Parameters.AddWithValue("c", LockClass);
        command.Parameters.AddWithValue("k", KeyOf(target));
        return (bool)(await command.ExecuteScalarAsync(ct))!;
    }

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
