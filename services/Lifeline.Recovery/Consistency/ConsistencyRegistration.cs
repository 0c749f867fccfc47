namespace Lifeline.Recovery.Consistency;

internal static class ConsistencyRegistration
{
    /// <summary>The consistency checks (in the order they run) and their runner.</summary>
    public static IHostApplicationBuilder AddConsistencyChecks(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<IConsistencyCheck, OrphanedAssignmentsCheck>();
        builder.Services.AddSingleton<IConsistencyCheck, WorkerTaskMismatchCheck>();
        builder.Services.AddSingleton<IConsistencyCheck, CircularDependenciesCheck>();
        builder.Services.AddSingleton<IConsistencyCheck, TimeoutViolationsCheck>();
        builder.Services.AddSingleton<IConsistencyCheck, RedisPostgresDisagreementCheck>();
        builder.Services.AddSingleton<ConsistencyRunner>();
        return builder;
    }
}
