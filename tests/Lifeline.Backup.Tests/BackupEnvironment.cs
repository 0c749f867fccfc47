using Grpc.Core;
using Lifeline.Backup.V1;
using Npgsql;

namespace Lifeline.Backup.Tests;

/// <summary>
/// A test class's backup catalog database and backup directory. Each test creates its own target
/// databases (<see cref="CreateTargetAsync"/>) and starts a backup service instance configured with them
/// (<see cref="StartAsync"/>), so tests never share a target or its replication slot.
/// </summary>
public sealed class BackupEnvironment() : ServiceTestEnvironment("backup")
{
    private readonly List<string> _databases = [];
    private readonly List<ServiceHost> _hosts = [];

    public string BackupDirectory { get; } = Path.Combine(Path.GetTempPath(), "lifeline-backup-tests-" + Guid.NewGuid().ToString("N")[..12]);

    /// <summary>A new database with the sample schema (and some rows); returns the target's name and connection string.</summary>
    public async Task<TestTarget> CreateTargetAsync(int rows = 200)
    {
        var connection = await Postgres.CreateDatabaseAsync("target");
        _databases.Add(connection);
        var target = new TestTarget("t" + Guid.NewGuid().ToString("N")[..10], connection);
        await target.ExecuteAsync(SampleSchema.Create);
        await target.ExecuteAsync(SampleSchema.Seed(rows));
        return target;
    }

    /// <summary>Starts a backup service instance with these targets.</summary>
    public async Task<ServiceHost> StartAsync(IEnumerable<TestTarget> targets, IDictionary<string, string?>? settings = null)
    {
        var config = new Dictionary<string, string?>
        {
            ["ConnectionStrings:backupdb"] = DatabaseConnectionString,
            ["Backup:Directory"] = BackupDirectory,
            ["Backup:SchedulerInterval"] = "00:00:00.200",
            ["Backup:PgBinDirectory"] = Postgres.BinDirectory,
        };
        foreach (var target in targets)
        {
            config[$"Backup:Targets:{target.Name}:Connection"] = target.ConnectionString;
        }
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            config[k] = v;
        }
        var host = await ServiceHost.StartAsync(BackupApplication.Build, config);
        _hosts.Add(host);
        return host;
    }

    /// <summary>Drops a database created by a restore (the replaced one) when the test is done.</summary>
    public void TrackDatabase(string connectionString) => _databases.Add(connectionString);

    protected override async Task OnDisposingAsync()
    {
        foreach (var host in _hosts)
        {
            await host.DisposeAsync();
        }
        foreach (var database in _databases)
        {
            await DropWithSlotsAsync(database);
        }
        if (Directory.Exists(BackupDirectory))
        {
            Directory.Delete(BackupDirectory, recursive: true);
        }
    }

    /// <summary>Slots pin a database: drop them first, then the database.</summary>
    private async Task DropWithSlotsAsync(string connectionString)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database!;
        await using (var admin = new NpgsqlConnection(Postgres.AdminConnectionString))
        {
            await admin.OpenAsync();
            await using var drop = new NpgsqlCommand("""
                SELECT pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s JOIN pg_database d ON d.oid = s.datoid
                WHERE d.datname = @d AND NOT s.active
                """, admin);
            drop.Parameters.AddWithValue("d", name);
            await drop.ExecuteNonQueryAsync();
        }
        await Postgres.DropDatabaseAsync(connectionString);
    }
}

/// <summary>A target database of one test.</summary>
public sealed record TestTarget(string Name, string ConnectionString)
{
    public string Database => new NpgsqlConnectionStringBuilder(ConnectionString).Database!;

    public string ConnectionStringFor(string database) =>
        new NpgsqlConnectionStringBuilder(ConnectionString) { Database = database }.ConnectionString;

    public async Task ExecuteAsync(string sql)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(ConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(ConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public static async Task<T> ScalarOnAsync<T>(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Every user table's rows as text, sorted: the database's content, compared exactly.</summary>
    public Task<SortedDictionary<string, string>> ContentAsync() => ContentOfAsync(ConnectionString);

    public static async Task<SortedDictionary<string, string>> ContentOfAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        var tables = new List<string>();
        await using (var list = new NpgsqlCommand("""
            SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%' ORDER BY 1
            """, connection))
        await using (var reader = await list.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                tables.Add(reader.GetString(0));
            }
        }
        var content = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var table in tables)
        {
            await using var command = new NpgsqlCommand($"SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"), '') FROM {table} t", connection);
            content[table] = (string)(await command.ExecuteScalarAsync())!;
        }
        return content;
    }
}

/// <summary>Backup service calls as a test makes them: streams read to their end.</summary>
public static class BackupCalls
{
    public static BackupService.BackupServiceClient Backups(this ServiceHost host) => new(host.ForTenant());

    public static async Task<(Backup.V1.Backup Backup, List<Progress> Progress)> CreateAsync(
        this BackupService.BackupServiceClient client, string target, BackupType type, CancellationToken ct = default)
    {
        using var call = client.CreateBackup(new CreateBackupRequest { Target = target, Type = type }, cancellationToken: ct);
        var progress = new List<Progress>();
        Backup.V1.Backup? backup = null;
        await foreach (var message in call.ResponseStream.ReadAllAsync(ct))
        {
            if (message.Progress is not null)
            {
                progress.Add(message.Progress);
            }
            backup ??= message.Backup;
        }
        Assert.NotNull(backup);
        Assert.Equal(BackupStatus.Completed, backup.Status);
        return (backup, progress);
    }

    public static async Task<RestoreResult> RestoreAsync(this BackupService.BackupServiceClient client, string target, string backupId, bool preRestore = false)
    {
        using var call = client.RestoreBackup(new RestoreBackupRequest { Target = target, BackupId = backupId, PreRestoreBackup = preRestore });
        RestoreResult? result = null;
        await foreach (var message in call.ResponseStream.ReadAllAsync())
        {
            result ??= message.Result;
        }
        Assert.NotNull(result);
        return result;
    }

    public static async Task<Backup.V1.Backup> VerifyAsync(this BackupService.BackupServiceClient client, string backupId)
    {
        using var call = client.VerifyBackup(new VerifyBackupRequest { BackupId = backupId });
        Backup.V1.Backup? backup = null;
        await foreach (var message in call.ResponseStream.ReadAllAsync())
        {
            backup ??= message.Backup;
        }
        Assert.NotNull(backup);
        return backup;
    }

    /// <summary>Expects the call to fail with <paramref name="code"/>; returns the rich status.</summary>
    public static async Task<Google.Rpc.Status> RefusedAsync(Func<Task> call, StatusCode code)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, ex.StatusCode);
        return ex.GetRpcStatus()!;
    }

    public static Google.Rpc.ErrorInfo ErrorInfo(this Google.Rpc.Status status) => status.GetDetail<Google.Rpc.ErrorInfo>()!;

    public static Google.Rpc.BadRequest BadRequest(this Google.Rpc.Status status) => status.GetDetail<Google.Rpc.BadRequest>()!;

    /// <summary>Ids of a target's backups, newest first.</summary>
    public sealed class Lister(ServiceHost host)
    {
        public async Task<List<string>> AllAsync(string target) =>
            (await host.Backups().ListBackupsAsync(new ListBackupsRequest { Target = target })).Backups.Select(b => b.BackupId).ToList();
    }

    /// <summary>Polls until <paramref name="condition"/> holds or the timeout passes.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return true;
            }
            await Task.Delay(50);
        }
        return await condition();
    }
}
