using Lifeline.Recovery.DisasterRecovery.Steps;

namespace Lifeline.Recovery.DisasterRecovery;

internal static class DisasterRecoveryRegistration
{
    /// <summary>Disaster-recovery plans, the run coordinator (one run at a time, orphans failed at start) and one executor per step type.</summary>
    public static IHostApplicationBuilder AddDisasterRecovery(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<DrPlanStore>();
        builder.Services.AddSingleton<IBackupGateway, BackupServiceGateway>();
        builder.Services.AddSingleton<IDrStepExecutor, BackupStep>();
        builder.Services.AddSingleton<IDrStepExecutor, RestoreStep>();
        builder.Services.AddSingleton<IDrStepExecutor, NotificationStep>();
        builder.Services.AddSingleton<IDrStepExecutor, TaskRecoveryStep>();
        builder.Services.AddSingleton<IDrStepExecutor, ValidationStep>();
        builder.Services.AddSingleton<IDrStepExecutor, StateRecoveryStep>();
        builder.Services.AddSingleton<IConsistencyProbe, ConsistencyProbe>();
        builder.Services.AddSingleton<DrRunCoordinator>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<DrRunCoordinator>());
        builder.Services.AddHostedService<DrOrphanSweep>();
        return builder;
    }
}
