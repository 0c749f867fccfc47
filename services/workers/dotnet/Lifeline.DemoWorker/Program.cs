using Lifeline.DemoWorker;
using Lifeline.Worker;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// Runs the demo handlers until Ctrl-C/SIGTERM, a drain command, or --once N tasks have ended.
// Exit code: 0 after a graceful stop, 1 when the worker failed (e.g. a refused credential), 2 on bad arguments.
DemoOptions demo;
try
{
    demo = DemoOptions.Parse(args);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"{ex.Message}\n\n{DemoOptions.Usage}");
    return 2;
}

if (demo.ShowHelp)
{
    Console.WriteLine(DemoOptions.Usage);
    return 0;
}

var builder = Host.CreateApplicationBuilder();
builder.Logging.AddSimpleConsole(console => { console.SingleLine = true; console.TimestampFormat = "HH:mm:ss.fff "; });
builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = TimeSpan.FromSeconds(30));
var handlers = builder.Services.AddLifelineWorker(demo.Apply);
if (demo.Types.Contains("demo.echo"))
{
    handlers.AddTaskHandler<EchoHandler>();
}

if (demo.Types.Contains("demo.fail"))
{
    handlers.AddTaskHandler<FailHandler>();
}

if (demo.Types.Contains("demo.steps"))
{
    builder.Services.AddSingleton(demo);
    handlers.AddTaskHandler<StepsHandler>();
}

using var host = builder.Build();
var worker = host.Services.GetRequiredService<LifelineWorker>();
try
{
    await host.RunAsync();
}
catch (Microsoft.Extensions.Options.OptionsValidationException ex)
{
    Console.Error.WriteLine(string.Join(Environment.NewLine, ex.Failures));
    return 2;
}

var statistics = worker.Statistics;
Console.WriteLine($"done: {statistics}");
return worker.ExecuteTask is { IsFaulted: true } ? 1 : 0;
