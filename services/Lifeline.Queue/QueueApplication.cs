using Lifeline.Queue.Extensions;
using Lifeline.Queue.Grpc;
using Lifeline.ServiceDefaults;

namespace Lifeline.Queue;

/// <summary>Builds the queue service; Program.cs runs it, tests start it on a loopback port.</summary>
public static class QueueApplication
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        configure?.Invoke(builder); // first: hosts and tests supply configuration the services read
        builder.AddServiceDefaults();
        builder.AddQueueServices();

        var app = builder.Build();
        app.MapGrpcService<QueueGrpcService>();
        app.MapDefaultEndpoints();
        return app;
    }
}
