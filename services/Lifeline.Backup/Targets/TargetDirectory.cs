using Lifeline.Backup.Options;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Backup.Targets;

/// <summary>The configured targets, resolved once at start (a bad entry stops the service with its name).</summary>
public sealed class TargetDirectory
{
    private readonly Dictionary<string, BackupTarget> _targets = new(StringComparer.Ordinal);

    public TargetDirectory(IOptions<BackupOptions> options, IConfiguration configuration)
    {
        foreach (var (name, target) in options.Value.Targets)
        {
            var connection = configuration.GetConnectionString(target.Connection) ?? target.Connection;
            NpgsqlConnectionStringBuilder builder;
            try
            {
                builder = new NpgsqlConnectionStringBuilder(connection);
            }
            catch (ArgumentException ex)
            {
                throw new InvalidOperationException(
                    $"Backup:Targets:{name}:Connection is neither a ConnectionStrings entry nor a valid connection string: {ex.Message}", ex);
            }
            if (!string.IsNullOrWhiteSpace(target.Database))
            {
                builder.Database = target.Database;
            }
            if (string.IsNullOrWhiteSpace(builder.Database) || string.IsNullOrWhiteSpace(builder.Host))
            {
                throw new InvalidOperationException($"Backup:Targets:{name}: the connection must name a host and a database.");
            }
            _targets[name] = new BackupTarget(name, builder.ConnectionString, options.Value.MaintenanceDatabase);
        }
    }

    public IReadOnlyCollection<BackupTarget> All => _targets.Values;

    public bool Contains(string name) => _targets.ContainsKey(name);

    /// <summary>The target, or NOT_FOUND (<c>TARGET_NOT_FOUND</c>).</summary>
    public BackupTarget Get(string name) =>
        _targets.TryGetValue(name, out var target) ? target : throw new NotFoundException("target", name);
}
