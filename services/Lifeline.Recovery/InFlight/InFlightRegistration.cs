namespace Lifeline.Recovery.InFlight;

internal static class InFlightRegistration
{
    public static IHostApplicationBuilder AddInFlightRecovery(this IHostApplicationBuilder builder) => builder;
}
