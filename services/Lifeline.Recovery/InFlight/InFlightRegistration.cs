namespace Lifeline.Recovery.InFlight;

internal static class InFlightRegistration
{
    /// <summary>The action log, the task recoverer, and the two leader-only paths: lost workers (fast) and scans (level-triggered).</summary>
    public static IHostApplicationBuilder AddInFlightRecovery(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<ActionLog>();
        builder.Services.AddSingleton<Telemetry.RecoveryTelemetry>();
        builder.Services.AddSingleton<TaskRecoverer>();
        builder.Services.AddSingleton<RecoveryScanner>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<RecoveryScanner>());
        builder.Services.AddSingleton<WorkerLossWatcher>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<WorkerLossWatcher>());
        return builder;
    }
}
