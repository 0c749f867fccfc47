using Microsoft.EntityFrameworkCore;

namespace Lifeline.Recovery.Data;

/// <summary>The recovery database: actions, system state, checks, plans, disaster recovery, the webhook outbox.</summary>
public sealed class RecoveryDbContext(DbContextOptions<RecoveryDbContext> options) : DbContext(options)
{
    public DbSet<WatchCursorEntity> WatchCursors => Set<WatchCursorEntity>();
    public DbSet<RecoveryActionEntity> RecoveryActions => Set<RecoveryActionEntity>();
    public DbSet<SystemStateEntity> SystemStates => Set<SystemStateEntity>();
    public DbSet<CheckRunEntity> CheckRuns => Set<CheckRunEntity>();
    public DbSet<ConsistencyIssueEntity> ConsistencyIssues => Set<ConsistencyIssueEntity>();
    public DbSet<RecoveryPlanEntity> RecoveryPlans => Set<RecoveryPlanEntity>();
    public DbSet<DrPlanEntity> DrPlans => Set<DrPlanEntity>();
    public DbSet<DrRunEntity> DrRuns => Set<DrRunEntity>();
    public DbSet<NotificationEntity> Notifications => Set<NotificationEntity>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(RecoveryDbContext).Assembly);
}

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without a database.</summary>
internal sealed class DesignTimeRecoveryDbContextFactory : Microsoft.EntityFrameworkCore.Design.IDesignTimeDbContextFactory<RecoveryDbContext>
{
    public RecoveryDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<RecoveryDbContext>().UseNpgsql("Host=localhost;Database=recovery_design").Options);
}
