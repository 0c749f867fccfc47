using Lifeline.Registry.Extensions;
using Lifeline.Registry.Grpc;
using Lifeline.ServiceDefaults;

namespace Lifeline.Registry;

/// <summary>Builds the registry service; Program.cs runs it, tests start it on a loopback port.</summary>
public static class RegistryApplication
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        configure?.Invoke(builder); // first: hosts and tests supply configuration the services read
        builder.AddServiceDefaults();
        builder.AddRegistryServices();

        var app = builder.Build();
        app.MapGrpcService<RegistryGrpcService>();
        app.MapDefaultEndpoints();
        return app;
    }
}
