namespace Lifeline.Recovery.DisasterRecovery;

// TEMPORARY scaffold while this area is being built in parallel; replaced by the area's own registration.
internal static class DisasterRecoveryRegistration
{
    public static IHostApplicationBuilder AddDisasterRecovery(this IHostApplicationBuilder builder) => builder;
}
