using Lifeline.Queue.Data.Configurations;
using Microsoft.EntityFrameworkCore;

namespace Lifeline.Queue.Data;

/// <summary>The queue database's schema and migrations.</summary>
public sealed class QueueDbContext(DbContextOptions<QueueDbContext> options) : DbContext(options)
{
    public DbSet<TaskEntity> Tasks => Set<TaskEntity>();
    public DbSet<TaskDependencyEntity> TaskDependencies => Set<TaskDependencyEntity>();
    public DbSet<TaskHistoryEntity> TaskHistory => Set<TaskHistoryEntity>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.ApplyConfiguration(new TaskEntityConfiguration());
        modelBuilder.ApplyConfiguration(new TaskDependencyEntityConfiguration());
        modelBuilder.ApplyConfiguration(new TaskHistoryEntityConfiguration());
    }
}
