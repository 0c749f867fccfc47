namespace Lifeline.Recovery.SystemState;

internal static class SystemStateRegistration
{
    /// <summary>The system state: its store, the live collector, and the keeper (leader only) that restores and snapshots it.</summary>
    public static IHostApplicationBuilder AddSystemState(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<SystemStateStore>();
        builder.Services.AddSingleton<SystemStateCollector>();
        builder.Services.AddSingleton<SystemStateKeeper>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<SystemStateKeeper>());
        return builder;
    }
}
