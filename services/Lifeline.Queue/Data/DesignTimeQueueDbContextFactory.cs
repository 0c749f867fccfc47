using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;

namespace Lifeline.Queue.Data;

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without a running service or database.</summary>
internal sealed class DesignTimeQueueDbContextFactory : IDesignTimeDbContextFactory<QueueDbContext>
{
    public QueueDbContext CreateDbContext(string[] args) =>
        new(new DbContextOptionsBuilder<QueueDbContext>().UseNpgsql("Host=localhost;Database=queue_design").Options);
}
