using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using Lifeline.AppHost;
using Lifeline.AppHost.Model;
using Lifeline.AppHost.Output;

[assembly: SupportedOSPlatform("linux")]

var console = new ConsoleOutput();
AppHostOptions options;
RepositoryLayout layout;
ServiceGraph graph;
try
{
    options = AppHostOptions.Parse(args, Environment.GetEnvironmentVariable);
    if (options.ShowHelp)
    {
        Console.WriteLine(AppHostOptions.Usage);
        return 0;
    }

    layout = RepositoryLayout.Locate(options.DataDirectory);
    graph = ServiceGraph.Create(Composition.Services(options, layout.DataDirectory));
}
catch (AppHostException ex)
{
    console.Error(ex.Message);
    return 2;
}

// Ctrl-C and SIGTERM start an orderly shutdown; the children run in sessions of their own, so only we get them.
using var shutdown = new CancellationTokenSource();
void OnSignal(PosixSignalContext context)
{
    context.Cancel = true;
    if (!shutdown.IsCancellationRequested)
    {
        console.Info($"{context.Signal} received; stopping services, then Redis, then PostgreSQL");
        shutdown.Cancel();
    }
}

using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

return await new AppHost(options, layout, graph, console).RunAsync(shutdown.Token);
