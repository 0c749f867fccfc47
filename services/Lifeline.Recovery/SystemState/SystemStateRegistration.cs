namespace Lifeline.Recovery.SystemState;

// TEMPORARY scaffold while this area is being built in parallel; replaced by the area's own registration.
internal static class SystemStateRegistration
{
    public static IHostApplicationBuilder AddSystemState(this IHostApplicationBuilder builder) => builder;
}
