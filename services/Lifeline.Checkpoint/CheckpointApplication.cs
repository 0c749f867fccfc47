using Lifeline.Checkpoint.Extensions;
using Lifeline.Checkpoint.Grpc;
using Lifeline.ServiceDefaults;

namespace Lifeline.Checkpoint;

/// <summary>Builds the checkpoint service; Program.cs runs it, tests start it on a loopback port.</summary>
public static class CheckpointApplication
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        configure?.Invoke(builder); // first: hosts and tests supply configuration the services read
        builder.AddServiceDefaults();
        builder.AddCheckpointServices();

        var app = builder.Build();
        app.MapGrpcService<CheckpointGrpcService>();
        app.MapDefaultEndpoints();
        return app;
    }
}
