using System.Runtime.InteropServices;
using Lifeline.Benchmarks;

if (args is ["fuzz", .. var fuzzArguments])
{
    using var fuzzCancellation = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) =>
    {
        e.Cancel = true;
        fuzzCancellation.Cancel();
    };
    return await FuzzBenchmark.RunAsync(fuzzArguments, fuzzCancellation.Token);
}

if (!BenchmarkOptions.TryParse(args, out var options, out var problem))
{
    Console.Error.WriteLine(problem);
    Console.Error.WriteLine(BenchmarkOptions.Usage);
    return problem is null ? 0 : 2;
}

// Ctrl+C or SIGTERM cancels the run, which then stops its queue service, PostgreSQL and Redis on the way out.
using var cancellation = new CancellationTokenSource();
void Cancel(PosixSignalContext context)
{
    context.Cancel = true;
    cancellation.Cancel();
}

using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Cancel);
using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Cancel);

return await BenchmarkRun.ExecuteAsync(options, cancellation.Token);
