using System.Runtime.Versioning;
using Aspire.Hosting;
using Lifeline.AppHost;

[assembly: SupportedOSPlatform("linux")]

AppHostOptions options;
try
{
    options = AppHostOptions.Parse(args, Environment.GetEnvironmentVariable);
}
catch (AppHostException ex)
{
    Console.Error.WriteLine($"apphost: {ex.Message}");
    return 2;
}

if (options.ShowHelp)
{
    Console.WriteLine(AppHostOptions.Usage);
    return 0;
}

var builder = DistributedApplication.CreateBuilder(new DistributedApplicationOptions { Args = [.. options.AspireArguments], AllowUnsecuredTransport = true });
try
{
    foreach (var line in LifelineSuite.Compose(builder, options))
    {
        Console.WriteLine(line);
    }
}
catch (AppHostException ex)
{
    Console.Error.WriteLine($"apphost: {ex.Message}");
    return 2;
}

// Ctrl-C and SIGTERM stop every resource (DCP stops the processes), then the AppHost exits.
await builder.Build().RunAsync().ConfigureAwait(false);
return 0;
