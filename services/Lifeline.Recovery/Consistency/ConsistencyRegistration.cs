namespace Lifeline.Recovery.Consistency;

// TEMPORARY scaffold while this area is being built in parallel; replaced by the area's own registration.
internal static class ConsistencyRegistration
{
    public static IHostApplicationBuilder AddConsistencyChecks(this IHostApplicationBuilder builder) => builder;
}
