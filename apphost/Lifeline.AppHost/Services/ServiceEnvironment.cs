using System.Collections;
using Lifeline.AppHost.Model;

namespace Lifeline.AppHost.Services;

/// <summary>The environment of one service, in Aspire's format.</summary>
internal static class ServiceEnvironment
{
    /// <summary>
    /// <c>ASPNETCORE_URLS</c>, <c>ConnectionStrings__{db}</c> / <c>ConnectionStrings__redis</c> for what it depends on,
    /// <c>services__{other}__{endpoint}__0</c> for every other service, <c>OTEL_SERVICE_NAME</c> (the OTLP endpoint
    /// and its settings are inherited). A null value removes an inherited variable: the apphost's own
    /// <c>LIFELINE_*</c> settings (the admin connection string among them) do not reach services.
    /// </summary>
    public static Dictionary<string, string?> Build(
        ServiceDefinition service,
        IEnumerable<ServiceDefinition> allServices,
        IReadOnlyDictionary<string, string> connectionStrings)
    {
        var environment = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (DictionaryEntry variable in Environment.GetEnvironmentVariables())
        {
            if (variable.Key is string name && name.StartsWith("LIFELINE_", StringComparison.Ordinal))
            {
                environment[name] = null;
            }
        }

        environment["ASPNETCORE_URLS"] = string.Join(';', service.Endpoints.Select(e => e.ToString()));
        environment["OTEL_SERVICE_NAME"] = service.Name;
        if (Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT") is { Length: > 0 } otlp)
        {
            environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp;
        }

        // One line per log entry reads well behind the [name] prefix.
        environment["Logging__Console__FormatterName"] = "simple";
        environment["Logging__Console__FormatterOptions__SingleLine"] = "true";

        foreach (var resource in service.Database is null ? service.Dependencies : service.Dependencies.Append(service.Database))
        {
            if (connectionStrings.TryGetValue(resource, out var connectionString))
            {
                environment[$"ConnectionStrings__{resource}"] = connectionString;
            }
        }

        if (service.PostgresAdmin && connectionStrings.TryGetValue(InfrastructureNames.PostgresAdmin, out var admin))
        {
            environment[$"ConnectionStrings__{InfrastructureNames.PostgresAdmin}"] = admin;
        }

        foreach (var (name, value) in service.Environment ?? new Dictionary<string, string?>())
        {
            environment[name] = value;
        }

        foreach (var other in allServices.Where(s => s.Name != service.Name))
        {
            foreach (var endpoint in other.Endpoints)
            {
                environment[$"services__{other.Name}__{endpoint.Name}__0"] = endpoint.ToString();
            }
        }

        return environment;
    }
}
