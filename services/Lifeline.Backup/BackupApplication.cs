using Lifeline.Backup.Extensions;
using Lifeline.Backup.Grpc;
using Lifeline.ServiceDefaults;

namespace Lifeline.Backup;

/// <summary>Builds the backup service; Program.cs runs it, tests start it on a loopback port.</summary>
public static class BackupApplication
{
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        configure?.Invoke(builder); // first: hosts and tests supply configuration the services read
        builder.AddServiceDefaults();
        builder.AddBackupServices();

        var app = builder.Build();
        app.MapGrpcService<BackupGrpcService>();
        app.MapDefaultEndpoints();
        return app;
    }
}
