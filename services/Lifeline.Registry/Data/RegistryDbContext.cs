using Lifeline.Registry.Data.Configurations;
using Microsoft.EntityFrameworkCore;

namespace Lifeline.Registry.Data;

/// <summary>The registry database: schema, migrations, and the circuit breakers' optimistic updates.</summary>
public sealed class RegistryDbContext(DbContextOptions<RegistryDbContext> options) : DbContext(options)
{
    public DbSet<WorkerEntity> Workers => Set<WorkerEntity>();
    public DbSet<WorkerEventEntity> WorkerEvents => Set<WorkerEventEntity>();
    public DbSet<TaskOutcomeEntity> TaskOutcomes => Set<TaskOutcomeEntity>();
    public DbSet<WorkerStatsEntity> WorkerStats => Set<WorkerStatsEntity>();
    public DbSet<CircuitBreakerEntity> CircuitBreakers => Set<CircuitBreakerEntity>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(RegistryDbContext).Assembly);
}

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without a database.</summary>
internal sealed class DesignTimeRegistryDbContextFactory : Microsoft.EntityFrameworkCore.Design.IDesignTimeDbContextFactory<RegistryDbContext>
{
    public RegistryDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<RegistryDbContext>().UseNpgsql("Host=localhost;Database=registry_design").Options);
}
