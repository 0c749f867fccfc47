namespace Lifeline.ServiceDefaults.Security;

/// <summary>
/// What a caller may do. The three tenant roles each include the ones before them and act on their own tenant's
/// records only; <see cref="PlatformAdmin"/> adds what spans the suite; <see cref="Service"/> is the services'
/// own identity, which no credential at the gateway can hold.
/// </summary>
public enum Role
{
    /// <summary>Get, list and watch the tenant's tasks, workers, checkpoints, history, statistics, breakers, recovery plans.</summary>
    Reader = 1,

    /// <summary>Reader, plus a worker's life: register, heartbeat, enqueue, lease, progress, complete, fail, release, checkpoint.</summary>
    Worker = 2,

    /// <summary>Worker, plus the tenant's administration: cancel, redrive, drain, reset breakers, roll back, recovery plans.</summary>
    Operator = 3,

    /// <summary>
    /// Operator in its own tenant, plus what spans tenants: backups, restores, retention and schedules,
    /// disaster-recovery plans and runs, the suite's recovery views, scans and consistency fixes.
    /// </summary>
    PlatformAdmin = 4,

    /// <summary>
    /// A Lifeline service calling another (recovery → queue, queue → registry): everything, including the calls
    /// that look across tenants (ListActiveTenants). Minted by the services themselves, never by the gateway.
    /// </summary>
    Service = 5,
}

public static class Roles
{
    /// <summary>The roles a credential (API key or JWT) may hold, by their configured names.</summary>
    public static IReadOnlyList<Role> CredentialRoles { get; } = [Role.Reader, Role.Worker, Role.Operator, Role.PlatformAdmin];

    /// <summary>Parses a role name: <c>reader</c>, <c>worker</c>, <c>operator</c>, <c>platform-admin</c>, <c>service</c>.</summary>
    public static bool TryParse(string? value, out Role role)
    {
        switch (value?.Trim().ToLowerInvariant())
        {
            case "reader":
                role = Role.Reader;
                return true;
            case "worker":
                role = Role.Worker;
                return true;
            case "operator":
                role = Role.Operator;
                return true;
            case "platform-admin":
                role = Role.PlatformAdmin;
                return true;
            case "service":
                role = Role.Service;
                return true;
            default:
                role = default;
                return false;
        }
    }

    /// <summary>The role's name as configured and as it appears in tokens: <c>platform-admin</c>.</summary>
    public static string Name(this Role role) => role switch
    {
        Role.PlatformAdmin => "platform-admin",
        _ => role.ToString().ToLowerInvariant(),
    };

    /// <summary>Whether the role may read and act beyond its own tenant (suite-wide views, backups, disaster recovery).</summary>
    public static bool SpansTenants(this Role role) => role >= Role.PlatformAdmin;
}
