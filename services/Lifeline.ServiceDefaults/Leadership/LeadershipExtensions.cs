using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lifeline.ServiceDefaults.Leadership;

/// <summary>Registers leader elections.</summary>
public static class LeadershipExtensions
{
    /// <summary>
    /// An election for the role <paramref name="name"/> in the service's database (its <see cref="NpgsqlDataSource"/>),
    /// as a keyed singleton (<c>[FromKeyedServices(name)] LeaderElection</c>) and a hosted service. Register it after the
    /// database migrator (which creates <c>lifeline_leaders</c>) and before the loops that work under it, so they stop
    /// before it resigns.
    /// </summary>
    public static IServiceCollection AddLeaderElection(this IServiceCollection services, string name,
        Func<IServiceProvider, TimeSpan> ttl, Func<IServiceProvider, string?>? holder = null)
    {
        services.AddKeyedSingleton(name, (sp, _) => new LeaderElection(name, ttl(sp), holder?.Invoke(sp),
            sp.GetRequiredService<NpgsqlDataSource>(), sp.GetService<TimeProvider>() ?? TimeProvider.System,
            sp.GetRequiredService<ILogger<LeaderElection>>()));
        // Not AddHostedService: it keeps one registration per implementation type, and a service may elect for several roles.
        services.AddSingleton<Microsoft.Extensions.Hosting.IHostedService>(sp => sp.GetRequiredKeyedService<LeaderElection>(name));
        return services;
    }
}
