namespace Lifeline.Gateway.Security;

/// <summary>What a caller may do; each role may do everything the ones before it may.</summary>
internal enum Role
{
    /// <summary>Get, list and watch: tasks, workers, history, statistics, breakers.</summary>
    Reader = 1,

    /// <summary>Reader, plus a worker's life: register, heartbeat, enqueue, lease, progress, complete, fail, release, report outcomes.</summary>
    Worker = 2,

    /// <summary>Everything, including administration: cancel, redrive, drain, reset breakers, recalculate, purge, restore, approve, recover.</summary>
    Operator = 3,

    /// <summary>
    /// Service-to-service calls that look across tenants (ListActiveTenants). No credential holds it (a key's role is
    /// reader, worker or operator), so the gateway refuses them to everyone: only services call them, directly.
    /// </summary>
    Internal = 4,
}

internal static class Roles
{
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
            default:
                role = default;
                return false;
        }
    }

    public static string Name(this Role role) => role.ToString().ToLowerInvariant();
}
