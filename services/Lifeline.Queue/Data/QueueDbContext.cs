using Lifeline.Queue.Data.Configurations;
using Microsoft.EntityFrameworkCore;

namespace Lifeline.Queue.Data;

/// <summary>The queue database's schema and migrations.</summary>
public sealed class QueueDbContext(DbContextOptions<QueueDbContext> options) : DbContext(options)
{
    public DbSet<TaskEntity> Tasks => Set<TaskEntity>();
    public DbSet<TaskDependencyEntity> TaskDependencies => Set<TaskDependencyEntity>();
    public DbSet<TaskHistoryEntity> TaskHistory => Set<TaskHistoryEntity>();
    public DbSet<ReportCursorEntity> ReportCursors => Set<ReportCursorEntity>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.ApplyConfiguration(new TaskEntityConfiguration());
        modelBuilder.ApplyConfiguration(new TaskDependencyEntityConfiguration());
        modelBuilder.ApplyConfiguration(new TaskHistoryEntityConfiguration());
        modelBuilder.Entity<ReportCursorEntity>(e =>
        {
            e.ToTable("outcome_report_cursors");
            e.HasKey(x => x.Name);
            e.Property(x => x.Name).HasColumnName("name");
            e.Property(x => x.Xid).HasColumnName("xid");
            e.Property(x => x.EventId).HasColumnName("event_id");
            e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
        });
    }
}
