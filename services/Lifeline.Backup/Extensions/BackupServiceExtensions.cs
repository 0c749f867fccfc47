using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Maintenance;
using Lifeline.Backup.Options;
using Lifeline.Backup.Restore;
using Lifeline.Backup.Retention;
using Lifeline.Backup.Scheduling;
using Lifeline.Backup.Targets;
using Lifeline.ServiceDefaults;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Lifeline.Backup.Extensions;

internal static class BackupServiceExtensions
{
    /// <summary>The catalog database, the targets, the backup/restore engine and the scheduler.</summary>
    public static IHostApplicationBuilder AddBackupServices(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<BackupOptions>().BindConfiguration(BackupOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        var backupDb = builder.Configuration.GetConnectionString("backupdb");
        if (string.IsNullOrWhiteSpace(backupDb))
        {
            throw new InvalidOperationException("ConnectionStrings:backupdb is not set: the backup service keeps its catalog in PostgreSQL.");
        }

        builder.Services.AddSingleton(sp => ServiceDataSource.Create(backupDb, sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddDbContextFactory<BackupDbContext>((sp, o) => o.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddSingleton(TimeProvider.System);

        builder.Services.AddSingleton<TargetDirectory>();
        builder.Services.AddSingleton<BackupFiles>();
        builder.Services.AddSingleton<PgTools>();
        builder.Services.AddSingleton<TargetLocks>();
        builder.Services.AddSingleton<BackupCatalog>();
        builder.Services.AddSingleton<Lifeline.Backup.Telemetry.BackupTelemetry>();
        builder.Services.AddSingleton<BackupRunner>();
        builder.Services.AddSingleton<ChainRestorer>();
        builder.Services.AddSingleton<RestoreRunner>();
        builder.Services.AddSingleton<BackupVerifier>();
        builder.Services.AddSingleton<BackupPruner>();
        builder.Services.AddSingleton<ScheduleStore>();
        builder.Services.AddSingleton<StaleRunSweeper>();

        // Order matters: the schema is migrated, then abandoned runs are cleaned up, then the scheduler starts.
        builder.Services.AddHostedService<DatabaseMigrator<BackupDbContext>>();
        builder.Services.AddHostedService<TargetValidation>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<StaleRunSweeper>());
        builder.Services.AddLeaderElection(BackupScheduler.Role, _ => BackupScheduler.TermTtl);
        builder.Services.AddHostedService<BackupScheduler>();
        builder.Services.AddSingleton<Lifeline.Backup.Telemetry.BackupMetricsSampler>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Lifeline.Backup.Telemetry.BackupMetricsSampler>());

        builder.Services.AddHealthChecks().AddCheck<PostgresHealthCheck>("backupdb", tags: ["ready"]);
        return builder;
    }

    /// <summary>Resolves the targets and pg_dump at start, so a bad configuration stops the service with the setting's name.</summary>
    private sealed class TargetValidation(TargetDirectory targets, PgTools pg) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            _ = targets.All.Count;
            _ = pg.BinDirectory;
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
