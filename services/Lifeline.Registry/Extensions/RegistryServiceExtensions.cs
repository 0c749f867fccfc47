using Lifeline.Registry.Breakers;
using Lifeline.Registry.Data;
using Lifeline.Registry.Events;
using Lifeline.Registry.Heartbeats;
using Lifeline.Registry.Maintenance;
using Lifeline.Registry.Options;
using Lifeline.Registry.Stats;
using Lifeline.Registry.Workers;
using Lifeline.ServiceDefaults;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using StackExchange.Redis;

namespace Lifeline.Registry.Extensions;

internal static class RegistryServiceExtensions
{
    /// <summary>The registry's database, Redis, domain services and background loops.</summary>
    public static IHostApplicationBuilder AddRegistryServices(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<RegistryOptions>().BindConfiguration(RegistryOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        var registryDb = builder.Configuration.GetConnectionString("registrydb");
        if (string.IsNullOrWhiteSpace(registryDb))
        {
            throw new InvalidOperationException("ConnectionStrings:registrydb is not set: the registry needs its PostgreSQL database.");
        }
        var redis = builder.Configuration.GetConnectionString("redis");
        if (string.IsNullOrWhiteSpace(redis))
        {
            throw new InvalidOperationException("ConnectionStrings:redis is not set: the registry keeps heartbeats in Redis.");
        }

        builder.Services.AddSingleton(sp => ServiceDataSource.Create(registryDb, sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddDbContextFactory<RegistryDbContext>((sp, o) => o.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddSingleton(_ => Lifeline.ServiceDefaults.Redis.ServiceRedis.Connect(redis));

        // Order matters: the schema is migrated before the loops start.
        builder.Services.AddHostedService<DatabaseMigrator<RegistryDbContext>>();
        builder.Services.AddSingleton<Lifeline.Registry.Telemetry.RegistryTelemetry>();
        builder.Services.AddSingleton<RedisMirror>();
        builder.Services.AddSingleton<BreakerStore>();
        builder.Services.AddSingleton<WorkerDirectory>();
        builder.Services.AddSingleton<OutcomeRecorder>();
        builder.Services.AddSingleton<WorkerEventFeed>();
        builder.Services.AddSingleton<WorkerCommandHub>();
        builder.Services.AddSingleton<HeartbeatRecorder>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<HeartbeatRecorder>());
        builder.Services.AddSingleton<LivenessMonitor>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<LivenessMonitor>());
        builder.Services.AddSingleton<WorkerReconciliation>();
        builder.Services.AddSingleton<RetentionSweeper>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<RetentionSweeper>());
        builder.Services.AddSingleton<Lifeline.Registry.Telemetry.RegistryMetricsSampler>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<Lifeline.Registry.Telemetry.RegistryMetricsSampler>());

        builder.Services.AddHealthChecks()
            .AddCheck<PostgresHealthCheck>("registrydb", tags: ["ready"])
            .AddCheck<RedisHealthCheck>("redis", tags: ["ready"]);
        return builder;
    }
}
