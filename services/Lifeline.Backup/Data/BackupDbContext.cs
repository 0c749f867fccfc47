using Microsoft.EntityFrameworkCore;

namespace Lifeline.Backup.Data;

/// <summary>The backup catalog: backups, restore runs, schedules.</summary>
public sealed class BackupDbContext(DbContextOptions<BackupDbContext> options) : DbContext(options)
{
    public DbSet<BackupEntity> Backups => Set<BackupEntity>();
    public DbSet<RestoreRunEntity> RestoreRuns => Set<RestoreRunEntity>();
    public DbSet<ScheduleEntity> Schedules => Set<ScheduleEntity>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(BackupDbContext).Assembly);
}

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without a database.</summary>
internal sealed class DesignTimeBackupDbContextFactory : Microsoft.EntityFrameworkCore.Design.IDesignTimeDbContextFactory<BackupDbContext>
{
    public BackupDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<BackupDbContext>().UseNpgsql("Host=localhost;Database=backup_design").Options);
}
