namespace Lifeline.Recovery.Plans;

// TEMPORARY scaffold while this area is being built in parallel; replaced by the area's own registration.
internal static class PlansRegistration
{
    public static IHostApplicationBuilder AddRecoveryPlans(this IHostApplicationBuilder builder) => builder;
}
