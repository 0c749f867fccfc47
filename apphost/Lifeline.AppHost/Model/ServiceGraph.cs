using System.Text.RegularExpressions;

namespace Lifeline.AppHost.Model;

/// <summary>The declared services, checked and ordered so every service comes after what it depends on.</summary>
internal sealed partial class ServiceGraph
{
    private ServiceGraph(IReadOnlyList<ServiceDefinition> startOrder) => StartOrder = startOrder;

    /// <summary>Dependencies first; among independent services, declaration order.</summary>
    public IReadOnlyList<ServiceDefinition> StartOrder { get; }

    public bool NeedsPostgres => StartOrder.Any(s => s.Dependencies.Contains(InfrastructureNames.Postgres));

    public bool NeedsRedis => StartOrder.Any(s => s.Dependencies.Contains(InfrastructureNames.Redis));

    /// <summary>Validates names, ports and dependencies; throws <see cref="AppHostException"/> naming the bad entry.</summary>
    public static ServiceGraph Create(IReadOnlyList<ServiceDefinition> services)
    {
        var byName = new Dictionary<string, ServiceDefinition>(StringComparer.Ordinal);
        var ports = new Dictionary<int, string>();
        var databases = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var service in services)
        {
            RequireIdentifier(service.Name, $"service name '{service.Name}'");
            if (InfrastructureNames.IsInfrastructure(service.Name) || !byName.TryAdd(service.Name, service))
            {
                throw new AppHostException($"Composition: the service name '{service.Name}' is used twice or is reserved.");
            }

            if (service.Endpoints.Count == 0)
            {
                throw new AppHostException($"Composition: service '{service.Name}' has no endpoint.");
            }

            foreach (var endpoint in service.Endpoints)
            {
                if (!ports.TryAdd(endpoint.Port, service.Name))
                {
                    throw new AppHostException(
                        $"Composition: port {endpoint.Port} of '{service.Name}' is already used by '{ports[endpoint.Port]}'.");
                }
            }

            if (service.Database is { } database)
            {
                RequireIdentifier(database, $"database '{database}' of '{service.Name}'");
                if (!databases.TryAdd(database, service.Name))
                {
                    throw new AppHostException($"Composition: database '{database}' is declared by both '{databases[database]}' and '{service.Name}'.");
                }
            }
        }

        foreach (var service in services)
        {
            var unknown = service.Dependencies.FirstOrDefault(d => !InfrastructureNames.IsInfrastructure(d) && !byName.ContainsKey(d));
            if (unknown is not null)
            {
                throw new AppHostException($"Composition: '{service.Name}' depends on '{unknown}', which is not declared.");
            }
        }

        return new ServiceGraph(TopologicalOrder(services));
    }

    private static List<ServiceDefinition> TopologicalOrder(IReadOnlyList<ServiceDefinition> services)
    {
        var ordered = new List<ServiceDefinition>(services.Count);
        var placed = new HashSet<string>(StringComparer.Ordinal);
        while (ordered.Count < services.Count)
        {
            var next = services.FirstOrDefault(s => !placed.Contains(s.Name) &&
                s.Dependencies.All(d => InfrastructureNames.IsInfrastructure(d) || placed.Contains(d)));
            if (next is null)
            {
                var stuck = services.Where(s => !placed.Contains(s.Name)).Select(s => s.Name);
                throw new AppHostException($"Composition: dependency cycle among {string.Join(", ", stuck)}.");
            }

            ordered.Add(next);
            placed.Add(next.Name);
        }

        return ordered;
    }

    private static void RequireIdentifier(string value, string what)
    {
        if (!Identifier().IsMatch(value))
        {
            throw new AppHostException($"Composition: {what} must be a lowercase identifier ([a-z][a-z0-9_]*, at most 63 characters).");
        }
    }

    [GeneratedRegex("^[a-z][a-z0-9_]{0,62}$")]
    private static partial Regex Identifier();
}
