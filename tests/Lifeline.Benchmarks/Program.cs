using Lifeline.Benchmarks;

if (!BenchmarkOptions.TryParse(args, out var options, out var problem))
{
    Console.Error.WriteLine(problem);
    Console.Error.WriteLine(BenchmarkOptions.Usage);
    return problem is null ? 0 : 2;
}

using var cancellation = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    // Let the run stop its child processes (queue service, PostgreSQL, Redis) on the way out.
    e.Cancel = true;
    cancellation.Cancel();
};

return await BenchmarkRun.ExecuteAsync(options, cancellation.Token);
