using Lifeline.Queue.Administration;
using Lifeline.Queue.Data;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Enqueuing;
using Lifeline.Queue.Events;
using Lifeline.Queue.Leasing;
using Lifeline.Queue.Maintenance;
using Lifeline.Queue.Options;
using Lifeline.Queue.Reading;
using Lifeline.Queue.Recovery;
using Lifeline.Queue.Reporting;
using Lifeline.Queue.Telemetry;
using Lifeline.ServiceDefaults;
using Lifeline.ServiceDefaults.Clients;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using Npgsql;
using StackExchange.Redis;

namespace Lifeline.Queue.Extensions;

internal static class QueueServiceExtensions
{
    /// <summary>The queue's database, Redis, domain services and background maintenance.</summary>
    public static IHostApplicationBuilder AddQueueServices(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<QueueOptions>().BindConfiguration(QueueOptions.Section).ValidateDataAnnotations().ValidateOnStart();

        var queueDb = builder.Configuration.GetConnectionString("queuedb");
        if (string.IsNullOrWhiteSpace(queueDb))
        {
            throw new InvalidOperationException("ConnectionStrings:queuedb is not set: the queue needs its PostgreSQL database.");
        }
        var redis = builder.Configuration.GetConnectionString("redis");
        if (string.IsNullOrWhiteSpace(redis))
        {
            throw new InvalidOperationException("ConnectionStrings:redis is not set: the queue needs Redis for wake-up signals.");
        }

        builder.Services.AddSingleton(sp => ServiceDataSource.Create(queueDb, sp.GetRequiredService<ILoggerFactory>()));
        // The task life's statements (enqueue, lease, start, progress, complete, fail) are planned once per connection.
        builder.Services.AddKeyedSingleton(ServiceDataSource.HotPathKey, (sp, _) => sp.GetRequiredService<IOptions<QueueOptions>>().Value.GenericPlans
            ? ServiceDataSource.CreateHotPath(queueDb, sp.GetRequiredService<ILoggerFactory>())
            : ServiceDataSource.Create(queueDb, sp.GetRequiredService<ILoggerFactory>()));
        builder.Services.AddDbContext<QueueDbContext>((sp, o) => o.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddSingleton(_ => Lifeline.ServiceDefaults.Redis.ServiceRedis.Connect(redis));

        // Order matters: the schema is migrated before anything else starts.
        builder.Services.AddHostedService<DatabaseMigrator<QueueDbContext>>();
        builder.Services.AddSingleton<QueueDepthSnapshot>();
        builder.Services.AddSingleton<QueueTelemetry>();
        builder.Services.AddSingleton<ReadySignal>();
        builder.Services.AddSingleton<TaskEnqueuer>();
        builder.Services.AddSingleton<WorkerGate>();
        builder.Services.AddSingleton<TaskLeaser>();
        builder.Services.AddSingleton<LeaseHolderOperations>();
        builder.Services.AddSingleton<CompleteAndRefill>();
        builder.Services.AddSingleton<TaskDispatcher>();
        builder.Services.AddSingleton<TaskAdministration>();
        builder.Services.AddSingleton<LivenessFence>();
        builder.Services.AddSingleton<TaskRecovery>();
        builder.Services.AddSingleton<TimeoutEnforcement>();
        builder.Services.AddSingleton<DependencyRepair>();
        builder.Services.AddSingleton<TaskQueries>();
        builder.Services.AddSingleton<TaskEventFeed>();
        builder.Services.AddSingleton<QueueMaintenance>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<QueueMaintenance>());
        // Outcomes go to the registry when it has an address; a queue without one does not report them, and takes no
        // part in the reporter's election (no term renewed for nothing).
        if (!string.IsNullOrWhiteSpace(builder.Configuration[ServiceClientRegistration.AddressKey("registry")]))
        {
            builder.AddServiceClient<Lifeline.Registry.V1.RegistryService.RegistryServiceClient>("registry");
            builder.Services.AddLeaderElection(OutcomeReporter.Role, _ => OutcomeReporter.TermTtl);
            builder.Services.AddHostedService<OutcomeReporter>();
        }
        builder.Services.AddSingleton<QueueDepthSampler>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<QueueDepthSampler>());
        // The hot statements' plans need statistics from the first minute on, not autovacuum's first visit.
        // … and the ready index's dead entries (one per lease) cleared long before autovacuum's 20 %: tasks is vacuumed
        // once 5,000 row versions or 5 % of it are dead.
        builder.Services.AddSingleton(sp =>
        {
            var options = sp.GetRequiredService<IOptions<QueueOptions>>().Value;
            return new StatisticsPolicy(["tasks", "task_history", "task_dependencies"], options.StatisticsInterval, VacuumThreshold: 5_000,
                ChurnInterval: options.StatisticsChurnInterval);
        });
        builder.Services.AddHostedService<StatisticsKeeper>();

        builder.Services.AddHealthChecks()
            .AddCheck<PostgresHealthCheck>("queuedb", tags: ["ready"])
            .AddCheck<RedisHealthCheck>("redis", HealthStatus.Degraded, ["ready"]);
        return builder;
    }
}
