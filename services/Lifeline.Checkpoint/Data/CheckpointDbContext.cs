using Microsoft.EntityFrameworkCore;

namespace Lifeline.Checkpoint.Data;

/// <summary>The checkpoint database's schema and migrations; the data paths use SQL (see Storage/).</summary>
public sealed class CheckpointDbContext(DbContextOptions<CheckpointDbContext> options) : DbContext(options)
{
    public DbSet<WorkflowEntity> Workflows => Set<WorkflowEntity>();
    public DbSet<CheckpointEntity> Checkpoints => Set<CheckpointEntity>();
    public DbSet<CheckpointArtifactEntity> CheckpointArtifacts => Set<CheckpointArtifactEntity>();
    public DbSet<ArtifactEntity> Artifacts => Set<ArtifactEntity>();
    public DbSet<ArtifactChunkEntity> ArtifactChunks => Set<ArtifactChunkEntity>();

    protected override void OnModelCreating(ModelBuilder modelBuilder) =>
        modelBuilder.ApplyConfigurationsFromAssembly(typeof(CheckpointDbContext).Assembly);
}

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without a database.</summary>
internal sealed class DesignTimeCheckpointDbContextFactory : Microsoft.EntityFrameworkCore.Design.IDesignTimeDbContextFactory<CheckpointDbContext>
{
    public CheckpointDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<CheckpointDbContext>().UseNpgsql("Host=localhost;Database=checkpoint_design").Options);
}
