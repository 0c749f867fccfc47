using Lifeline.Recovery.Extensions;
using Lifeline.Recovery.Grpc;
using Lifeline.ServiceDefaults;

namespace Lifeline.Recovery;

/// <summary>Builds the recovery service; Program.cs runs it, tests start it on a loopback port.</summary>
public static class RecoveryApplication
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        configure?.Invoke(builder); // first: hosts and tests supply configuration the services read
        builder.AddServiceDefaults();
        builder.AddRecoveryServices();

        var app = builder.Build();
        app.MapGrpcService<RecoveryGrpcService>();
        app.MapGrpcService<SystemStateGrpcService>();
        app.MapGrpcService<ConsistencyGrpcService>();
        app.MapGrpcService<RecoveryPlanGrpcService>();
        app.MapGrpcService<DisasterRecoveryGrpcService>();
        app.MapDefaultEndpoints();
        return app;
    }
}
