using System.Diagnostics;
using System.Globalization;
using Grpc.Core;
using Lifeline.Backup.V1;
using Lifeline.Benchmarks.Hosting;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Benchmarks.Reporting;
using Lifeline.Benchmarks.Client;
using Npgsql;

namespace Lifeline.Benchmarks;

/// <summary>
/// The backup section: generate a database of a meaningful size on the durable cluster, then time raw
/// <c>pg_dump</c>/<c>pg_restore</c> against the backup service's full backup and (verified, switched) restore on
/// the same database, and the size of an incremental backup after 1 % of the rows changed.
/// </summary>
internal static class BackupBenchmark
{
    private const double MiB = 1048576.0;

    public static async Task<BackupSection> RunAsync(BenchmarkOptions options, LocalInfrastructure infrastructure, CancellationToken ct)
    {
        var load = MachineInfo.LoadAverage();
        Console.WriteLine($"Backup (load average {load})");
        var targetMegabytes = (int)((options.Quick ? 40 : 300) * options.Scale);
        var work = Directory.CreateTempSubdirectory("lifeline-backup-bench-");
        try
        {
            var targetDb = await infrastructure.CreateDatabaseAsync("backup_bench_target", ct);
            var rows = await GenerateAsync(targetDb, targetMegabytes, ct);
            var databaseBytes = await ScalarAsync<long>(targetDb, "SELECT pg_database_size(current_database())", ct);
            Console.WriteLine($"  target     {databaseBytes / MiB:0.0} MiB, {rows:N0} rows (orders with an index, customers)");

            var definition = ServiceDefinition.Backup with
            {
                Settings = new Dictionary<string, string>
                {
                    ["Backup__Directory"] = Path.Combine(work.FullName, "service"),
                    ["Backup__PgBinDirectory"] = infrastructure.PostgresBinDirectory,
                    ["Backup__Targets__bench__Connection"] = targetDb,
                },
            };
            await using var target = await ServiceTarget.StartLocalAsync(definition, infrastructure, ct);
            using var connection = new BackupConnection(target.Url);
            var client = connection.Backups;
            var timings = new List<BackupTiming>();
            BackupTiming Timing(string operation, IReadOnlyList<double> samples, long fileBytes)
            {
                var median = samples.Order().ElementAt(samples.Count / 2);
                var timing = new BackupTiming(operation, median, fileBytes, databaseBytes / MiB / median, samples);
                timings.Add(timing);
                Console.WriteLine($"  backup     {operation,-58} {median,7:0.00} s {timing.DatabaseMegabytesPerSecond,7:0.0} MiB/s  " +
                                  $"(runs: {string.Join(", ", samples.Select(x => x.ToString("0.00", CultureInfo.InvariantCulture)))} s)");
                return timing;
            }

            // Warm-up: a first full backup settles JIT and caches for both sides.
            await CreateAsync(client, BackupType.Full, ct);

            // Raw and service runs alternate, so a burst of load on the shared machine hits both alike; medians are reported.
            var rounds = options.Quick ? 2 : 3;
            var rawFile = Path.Combine(work.FullName, "raw.dump");
            var digestAtFull = await DigestAsync(targetDb, ct);
            var rawDumps = new List<double>();
            var serviceFulls = new List<double>();
            Backup.V1.Backup full = null!;
            for (var round = 0; round < rounds; round++)
            {
                var clock = Stopwatch.StartNew();
                await RunToolAsync(infrastructure, "pg_dump", ["--format=custom", "--compress=6", $"--file={rawFile}", .. ConnectionArgs(targetDb)], ct);
                rawDumps.Add(clock.Elapsed.TotalSeconds);
                clock.Restart();
                full = await CreateAsync(client, BackupType.Full, ct);
                serviceFulls.Add(clock.Elapsed.TotalSeconds);
            }
            var rawDump = Timing("raw pg_dump -Fc -Z6", rawDumps, new FileInfo(rawFile).Length);
            var serviceFull = Timing("service CreateBackup full (snapshot slot, dump, checksums)", serviceFulls, full.SizeBytes);

            // 1 % of the rows change.
            var changed = await ExecuteAsync(targetDb, "UPDATE orders SET amount = amount + 1, status = 'changed' WHERE id % 100 = 0", ct);
            var digestAtIncremental = await DigestAsync(targetDb, ct);
            var incrementalClock = Stopwatch.StartNew();
            var incremental = await CreateAsync(client, BackupType.Incremental, ct);
            Timing($"service CreateBackup incremental ({changed:N0} rows changed)", [incrementalClock.Elapsed.TotalSeconds], incremental.SizeBytes);

            var rawRestores = new List<double>();
            var serviceRestores = new List<double>();
            var fullMatches = true;
            RestoreResult restoredFull = null!;
            for (var round = 0; round < rounds; round++)
            {
                var rawDb = await infrastructure.CreateDatabaseAsync("backup_bench_raw_restore", ct);
                var clock = Stopwatch.StartNew();
                await RunToolAsync(infrastructure, "pg_restore", ["--single-transaction", "--exit-on-error", .. ConnectionArgs(rawDb), rawFile], ct);
                rawRestores.Add(clock.Elapsed.TotalSeconds);
                await DropDatabaseAsync(targetDb, new NpgsqlConnectionStringBuilder(rawDb).Database!, ct);

                clock.Restart();
                restoredFull = await RestoreAsync(client, full.BackupId, ct);
                serviceRestores.Add(clock.Elapsed.TotalSeconds);
                fullMatches &= await DigestAsync(targetDb, ct) == digestAtFull;
                await DropDatabaseAsync(targetDb, restoredFull.ReplacedDatabase, ct);
            }
            var rawRestore = Timing("raw pg_restore --single-transaction", rawRestores, new FileInfo(rawFile).Length);
            var serviceRestore = Timing("service RestoreBackup full (sha256, restore, checksums, switch)", serviceRestores, full.SizeBytes);

            var chainClock = Stopwatch.StartNew();
            var restoredChain = await RestoreAsync(client, incremental.BackupId, ct);
            Timing("service RestoreBackup full + incremental", [chainClock.Elapsed.TotalSeconds], full.SizeBytes + incremental.SizeBytes);
            var incrementalMatches = await DigestAsync(targetDb, ct) == digestAtIncremental;
            await DropDatabaseAsync(targetDb, restoredChain.ReplacedDatabase, ct);

            target.EnsureServiceRunning();
            Console.WriteLine($"  backup     incremental {incremental.SizeBytes / 1024.0:0.0} KiB = {100.0 * incremental.SizeBytes / full.SizeBytes:0.00} % of the full; " +
                              $"restored content matches: {fullMatches && incrementalMatches}");
            return new BackupSection(
                new TargetInfo(target.Url.ToString(), target.Description), load, databaseBytes, rows, timings,
                BackupRatio: serviceFull.DatabaseMegabytesPerSecond / rawDump.DatabaseMegabytesPerSecond,
                RestoreRatio: serviceRestore.DatabaseMegabytesPerSecond / rawRestore.DatabaseMegabytesPerSecond,
                ChangedRows: changed, IncrementalBytes: incremental.SizeBytes, FullBytes: full.SizeBytes, IncrementalChanges: incremental.ChangeCount,
                RestoredContentMatches: fullMatches && incrementalMatches,
                target.Output?.ProblemCount ?? 0, target.Output?.Problems() ?? []);
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    /// <summary>orders (≈ 200 bytes a row plus its primary key and an index) until the database reaches the size.</summary>
    private static async Task<long> GenerateAsync(string connectionString, int megabytes, CancellationToken ct)
    {
        await ExecuteAsync(connectionString, """
            CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
            INSERT INTO customers SELECT g, 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 10000) g;
            CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, amount numeric(12,2) NOT NULL,
                                 status text NOT NULL, note text, created_at timestamptz NOT NULL);
            CREATE INDEX ix_orders_customer ON orders (customer_id, created_at);
            """, ct);
        const int chunk = 200_000;
        long rows = 0;
        while (await ScalarAsync<long>(connectionString, "SELECT pg_database_size(current_database())", ct) < megabytes * 1048576L)
        {
            await ExecuteAsync(connectionString, string.Create(CultureInfo.InvariantCulture, $"""
                INSERT INTO orders
                SELECT g, 1 + g % 10000, (g % 100000) / 100.0, (ARRAY['new','paid','shipped','returned'])[1 + g % 4],
                       md5(g::text) || ' ' || md5((g * 7)::text) || ' ' || md5((g * 13)::text), timestamptz '2026-01-01' + g * interval '1 second'
                FROM generate_series({rows + 1}, {rows + chunk}) g
                """), ct);
            rows += chunk;
        }
        await ExecuteAsync(connectionString, "VACUUM ANALYZE", ct);
        return rows + 10_000;
    }

    private static async Task<Backup.V1.Backup> CreateAsync(BackupService.BackupServiceClient client, BackupType type, CancellationToken ct)
    {
        using var call = client.CreateBackup(new CreateBackupRequest { Target = "bench", Type = type }, cancellationToken: ct);
        await foreach (var message in call.ResponseStream.ReadAllAsync(ct))
        {
            if (message.Backup is { } backup)
            {
                return backup;
            }
        }
        throw new InvalidOperationException("CreateBackup ended without a result.");
    }

    private static async Task<RestoreResult> RestoreAsync(BackupService.BackupServiceClient client, string backupId, CancellationToken ct)
    {
        using var call = client.RestoreBackup(new RestoreBackupRequest { Target = "bench", BackupId = backupId }, cancellationToken: ct);
        await foreach (var message in call.ResponseStream.ReadAllAsync(ct))
        {
            if (message.Result is { } result)
            {
                return result;
            }
        }
        throw new InvalidOperationException("RestoreBackup ended without a result.");
    }

    /// <summary>Order-independent digest of both tables' contents (independent of the service's own checksums).</summary>
    private static Task<string> DigestAsync(string connectionString, CancellationToken ct) => ScalarAsync<string>(connectionString, """
        SELECT (SELECT count(*) || ':' || sum(hashtext(o::text)::bigint) FROM orders o) || '/' ||
               (SELECT count(*) || ':' || sum(hashtext(c::text)::bigint) FROM customers c)
        """, ct);

    private static IEnumerable<string> ConnectionArgs(string connectionString)
    {
        var b = new NpgsqlConnectionStringBuilder(connectionString);
        return [$"--host={b.Host}", $"--port={b.Port}", $"--username={b.Username}", $"--dbname={b.Database}", "--no-password"];
    }

    private static async Task RunToolAsync(LocalInfrastructure infrastructure, string tool, IEnumerable<string> args, CancellationToken ct)
    {
        var start = new ProcessStartInfo(Path.Combine(infrastructure.PostgresBinDirectory, tool)) { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{tool} exited with {process.ExitCode}: {await stderr}");
        }
    }

    private static Task DropDatabaseAsync(string anyConnection, string database, CancellationToken ct) =>
        ExecuteAsync(new NpgsqlConnectionStringBuilder(anyConnection) { Database = "postgres" }.ConnectionString,
            $"DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)", ct);

    private static async Task<long> ExecuteAsync(string connectionString, string sql, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false, CommandTimeout = 0 }.ConnectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteNonQueryAsync(ct);
    }

    private static async Task<T> ScalarAsync<T>(string connectionString, string sql, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false, CommandTimeout = 0 }.ConnectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync(ct))!;
    }
}
