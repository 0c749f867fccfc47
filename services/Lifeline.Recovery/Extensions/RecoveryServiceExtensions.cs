using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Consistency;
using Lifeline.Recovery.Data;
using Lifeline.Recovery.DisasterRecovery;
using Lifeline.Recovery.InFlight;
using Lifeline.Recovery.Leadership;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.Plans;
using Lifeline.Recovery.SystemState;
using Lifeline.ServiceDefaults;
using Lifeline.ServiceDefaults.Clients;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;
using StackExchange.Redis;

namespace Lifeline.Recovery.Extensions;

internal static class RecoveryServiceExtensions
{
    /// <summary>The recovery database (and its leader election), Redis, clients of the other services, and every recovery loop.</summary>
    public static IHostApplicationBuilder AddRecoveryServices(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<RecoveryOptions>().BindConfiguration(RecoveryOptions.Section)
            .PostConfigure(o => o.Tenants = o.Tenants.Length == 0 ? ["default"] : [.. o.Tenants.Distinct(StringComparer.Ordinal)])
            .ValidateDataAnnotations().ValidateOnStart();
        var recoveryDb = builder.Configuration.GetConnectionString("recoverydb");
        if (string.IsNullOrWhiteSpace(recoveryDb))
        {
            throw new InvalidOperationException("ConnectionStrings:recoverydb is not set: the recovery service needs its PostgreSQL database.");
        }
        var redis = builder.Configuration.GetConnectionString("redis");
        if (string.IsNullOrWhiteSpace(redis))
        {
            throw new InvalidOperationException("ConnectionStrings:redis is not set: recovery reports and checks the Redis mirror of worker state.");
        }

        builder.Services.AddSingleton(sp => ServiceDataSource.Create(recoveryDb, sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddDbContextFactory<RecoveryDbContext>((sp, o) => o.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddSingleton(_ => Lifeline.ServiceDefaults.Redis.ServiceRedis.Connect(redis));
        // The services recovery calls: it cannot work without the queue and the registry; without checkpoint it requeues
        // without resuming from checkpoints, without backup disaster recovery cannot back up or restore.
        builder.AddServiceClient<Queue.V1.QueueService.QueueServiceClient>("queue");
        builder.AddServiceClient<Registry.V1.RegistryService.RegistryServiceClient>("registry");
        builder.AddOptionalServiceClient<Checkpoint.V1.CheckpointService.CheckpointServiceClient>("checkpoint");
        builder.AddOptionalServiceClient<Backup.V1.BackupService.BackupServiceClient>("backup");
        builder.Services.AddSingleton<SuiteClients>();
        builder.Services.AddSingleton<Tenancy.CoveredTenants>();
        builder.Services.AddSingleton(TimeProvider.System);

        // Order matters: the schema is migrated before the loops start; the leader election before the leader-only loops.
        builder.Services.AddHostedService<DatabaseMigrator<RecoveryDbContext>>();
        builder.Services.AddLeaderElection(RecoveryLeadership.Role,
            sp => sp.GetRequiredService<IOptions<RecoveryOptions>>().Value.LeaderLeaseDuration,
            sp => sp.GetRequiredService<IOptions<RecoveryOptions>>().Value.InstanceId);
        builder.AddInFlightRecovery();
        builder.AddSystemState();
        builder.AddConsistencyChecks();
        builder.AddNotifications();
        builder.AddRecoveryPlans();
        builder.AddDisasterRecovery();

        builder.Services.AddHealthChecks()
            .AddCheck<PostgresHealthCheck>("recoverydb", tags: ["ready"])
            .AddCheck<RedisHealthCheck>("redis", tags: ["ready"]);
        return builder;
    }
}
