using Lifeline.Checkpoint.Artifacts;
using Lifeline.Checkpoint.Checkpoints;
using Lifeline.Checkpoint.Data;
using Lifeline.Checkpoint.Maintenance;
using Lifeline.Checkpoint.Options;
using Lifeline.Checkpoint.Rollbacks;
using Lifeline.Checkpoint.Storage;
using Lifeline.ServiceDefaults;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Lifeline.Checkpoint.Extensions;

internal static class CheckpointServiceExtensions
{
    /// <summary>The checkpoint database, the domain services and the maintenance loop.</summary>
    public static IHostApplicationBuilder AddCheckpointServices(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<CheckpointOptions>().BindConfiguration(CheckpointOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        var checkpointDb = builder.Configuration.GetConnectionString("checkpointdb");
        if (string.IsNullOrWhiteSpace(checkpointDb))
        {
            throw new InvalidOperationException("ConnectionStrings:checkpointdb is not set: the checkpoint service needs its PostgreSQL database.");
        }

        builder.Services.AddSingleton(sp => ServiceDataSource.Create(checkpointDb, sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddDbContextFactory<CheckpointDbContext>((sp, o) => o.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>()));

        // Order matters: the schema is migrated before the maintenance loop starts.
        builder.Services.AddHostedService<DatabaseMigrator<CheckpointDbContext>>();
        builder.Services.AddSingleton<CheckpointStore>();
        builder.Services.AddSingleton<StateCache>();
        builder.Services.AddSingleton<Lifeline.Checkpoint.Telemetry.CheckpointTelemetry>();
        builder.Services.AddSingleton<CheckpointWriter>();
        builder.Services.AddSingleton<CheckpointReader>();
        builder.Services.AddSingleton<CheckpointPruner>();
        builder.Services.AddSingleton<RollbackRunner>();
        builder.Services.AddSingleton<ArtifactStore>();
        builder.Services.AddSingleton<CheckpointMaintenance>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<CheckpointMaintenance>());

        builder.Services.AddHealthChecks().AddCheck<PostgresHealthCheck>("checkpointdb", tags: ["ready"]);
        return builder;
    }
}
