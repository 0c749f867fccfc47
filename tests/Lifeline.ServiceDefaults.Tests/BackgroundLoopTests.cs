using System.Diagnostics;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Lifeline.ServiceDefaults.Tests;

/// <summary>The one policy of background loops: they stop only on shutdown; any failure is logged, counted, backed off.</summary>
public sealed class BackgroundLoopTests
{
    private static readonly LoopBackoff Quick = new(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(40));

    [Fact(Timeout = 30_000)]
    public async Task A_loop_whose_passes_throw_anything_keeps_running_and_logs_and_counts_each_failure()
    {
        using var meter = new LoopMeter(nameof(FlakyLoop));
        Exception[] thrown =
        [
            new InvalidOperationException("EF Core wrapped a connection failure", new TimeoutException()),
            new KeyNotFoundException("a domain error nobody listed"),
            new OperationCanceledException("a time limit of the pass's own, not a shutdown"),
            new NotSupportedException(),
        ];
        var logs = new LogRecords();
        using var host = Build(logs, services => services.AddHostedService(sp => new FlakyLoop(thrown, sp.GetRequiredService<ILogger<FlakyLoop>>())));
        var loop = host.Services.GetServices<IHostedService>().OfType<FlakyLoop>().Single();
        await host.StartAsync();
        try
        {
            Assert.True(await EventuallyAsync(() => meter.Passes >= 5, TimeSpan.FromSeconds(20)), $"only {meter.Passes} passes");

            Assert.Equal(thrown.Length, meter.Failures);
            Assert.Equal(thrown.Select(e => e.GetType().FullName), meter.ErrorTypes);
            var failures = logs.Entries.Where(e => e.EventId.Id == 9201).ToList();
            Assert.Equal(thrown, failures.Select(e => e.Exception));
            Assert.All(failures, e => Assert.Equal(LogLevel.Warning, e.Level));
            Assert.All(failures, e => Assert.Contains(nameof(FlakyLoop), e.Message, StringComparison.Ordinal));
            Assert.Single(logs.Entries, e => e.EventId.Id == 9202); // passing again after the failures is said once
            Assert.False(loop.ExecuteTask!.IsCompleted, "the loop ended");
            Assert.False(host.Services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.IsCancellationRequested, "the host stops");
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact(Timeout = 30_000)]
    public async Task Loops_stop_promptly_on_shutdown_whether_in_a_pass_or_between_passes_and_the_cancellation_is_no_failure()
    {
        using var blockedMeter = new LoopMeter(nameof(BlockedPassLoop));
        using var waitingMeter = new LoopMeter(nameof(HourlyLoop));
        using var host = Build(new LogRecords(), services =>
        {
            services.AddHostedService<BlockedPassLoop>();
            services.AddHostedService<HourlyLoop>();
        });
        var blocked = host.Services.GetServices<IHostedService>().OfType<BlockedPassLoop>().Single();
        var hourly = host.Services.GetServices<IHostedService>().OfType<HourlyLoop>().Single();
        await host.StartAsync();
        await blocked.Entered.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(await EventuallyAsync(() => waitingMeter.Passes == 1, TimeSpan.FromSeconds(10)));

        var stopping = Stopwatch.StartNew();
        await host.StopAsync();

        Assert.True(stopping.Elapsed < TimeSpan.FromSeconds(2), $"stopping took {stopping.Elapsed}");
        Assert.True(blocked.ExecuteTask!.IsCompletedSuccessfully);
        Assert.True(hourly.ExecuteTask!.IsCompletedSuccessfully);
        Assert.Equal(0, blockedMeter.Failures + waitingMeter.Failures);
    }

    [Fact(Timeout = 10_000)]
    public async Task Failed_passes_back_off_exponentially_with_jitter_up_to_the_cap_and_a_completed_pass_resets_the_backoff()
    {
        var runner = new LoopRunner("backoff", NullLogger.Instance, new LoopBackoff(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(8)));
        LoopPass failing = _ => throw new InvalidOperationException("down");

        var waits = new List<TimeSpan>();
        for (var i = 0; i < 6; i++)
        {
            waits.Add(await runner.PassAsync(failing, CancellationToken.None));
        }

        double[] seconds = [1, 2, 4, 8, 8, 8];
        for (var i = 0; i < seconds.Length; i++)
        {
            Assert.InRange(waits[i].TotalSeconds, seconds[i] * 0.75, seconds[i]); // up to a quarter shorter, never longer than the cap
        }
        Assert.Equal(TimeSpan.FromSeconds(3), await runner.PassAsync(_ => Task.FromResult(TimeSpan.FromSeconds(3)), CancellationToken.None));
        Assert.InRange((await runner.PassAsync(failing, CancellationToken.None)).TotalSeconds, 0.75, 1);
    }

    [Fact(Timeout = 10_000)]
    public async Task Whatever_a_pass_throws_once_its_token_is_cancelled_ends_the_loop_without_a_failure()
    {
        using var meter = new LoopMeter("cancelled");
        var runner = new LoopRunner("cancelled", NullLogger.Instance);
        using var stopping = new CancellationTokenSource();
        await stopping.CancelAsync();

        Assert.Equal(LoopRunner.Done, await runner.PassAsync(_ => throw new IOException("the connection was torn down by the shutdown"), stopping.Token));
        await runner.RunAsync(_ => throw new IOException("never reached"), stopping.Token); // returns at once, never throws
        Assert.Equal(0, meter.Failures);
    }

    [Fact(Timeout = 30_000)]
    public async Task A_first_pass_at_start_that_fails_does_not_stop_the_start_and_is_tried_again_until_done()
    {
        using var meter = new LoopMeter(nameof(StartupSweep));
        using var host = Build(new LogRecords(), services => services.AddHostedService<StartupSweep>());
        var sweep = host.Services.GetServices<IHostedService>().OfType<StartupSweep>().Single();

        await host.StartAsync(); // the first pass, inside StartAsync, fails: the start goes on
        try
        {
            Assert.True(sweep.Calls >= 1);
            Assert.True(await EventuallyAsync(() => sweep.ExecuteTask is { IsCompleted: true }, TimeSpan.FromSeconds(10)), "the sweep never finished");
            Assert.True(sweep.ExecuteTask!.IsCompletedSuccessfully);
            Assert.Equal(2, sweep.Calls);
            Assert.Equal(1, meter.Failures);
            Assert.Equal(1, meter.Passes);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact(Timeout = 30_000)]
    public async Task A_last_pass_that_fails_on_shutdown_is_logged_and_counted_and_the_host_still_stops()
    {
        using var meter = new LoopMeter(nameof(FlushingLoop));
        var logs = new LogRecords();
        using var host = Build(logs, services => services.AddHostedService<FlushingLoop>());
        var loop = host.Services.GetServices<IHostedService>().OfType<FlushingLoop>().Single();
        await host.StartAsync();

        await host.StopAsync();

        Assert.True(loop.LastPassRan);
        Assert.Equal(1, meter.Failures);
        Assert.Contains(logs.Entries, e => e.EventId.Id == 9201 && e.Exception is IOException);
    }

    private static IHost Build(LogRecords logs, Action<IServiceCollection> configure)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders().AddProvider(logs).SetMinimumLevel(LogLevel.Debug);
        configure(builder.Services);
        return builder.Build();
    }

    private static async Task<bool> EventuallyAsync(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            if (deadline.Elapsed > timeout)
            {
                return false;
            }
            await Task.Delay(10);
        }
        return true;
    }

    /// <summary>Throws the given exceptions in turn, one per pass, then passes every 10 ms.</summary>
    private sealed class FlakyLoop(IEnumerable<Exception> failures, ILogger<FlakyLoop> logger) : BackgroundLoop(logger, Quick)
    {
        private readonly Queue<Exception> _failures = new(failures);

        protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
        {
            await Task.Yield();
            if (_failures.TryDequeue(out var failure))
            {
                throw failure;
            }
            return TimeSpan.FromMilliseconds(10);
        }
    }

    /// <summary>A pass stuck on I/O that only its token ends.</summary>
    private sealed class BlockedPassLoop(ILogger<BlockedPassLoop> logger) : BackgroundLoop(logger)
    {
        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
        {
            Entered.TrySetResult();
            await Task.Delay(Timeout.InfiniteTimeSpan, stoppingToken);
            return TimeSpan.Zero;
        }
    }

    /// <summary>Waits an hour between passes.</summary>
    private sealed class HourlyLoop(ILogger<HourlyLoop> logger) : BackgroundLoop(logger)
    {
        protected override Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken) => Task.FromResult(TimeSpan.FromHours(1));
    }

    /// <summary>A one-off at start (a crash clean-up) whose first attempt fails.</summary>
    private sealed class StartupSweep(ILogger<StartupSweep> logger) : BackgroundLoop(logger, Quick)
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        protected override bool FirstPassAtStart => true;

        protected override Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken) =>
            Interlocked.Increment(ref _calls) == 1 ? throw new IOException("the database is not there yet") : Task.FromResult(Done);
    }

    /// <summary>Writes out what it gathered on shutdown, and that fails.</summary>
    private sealed class FlushingLoop(ILogger<FlushingLoop> logger) : BackgroundLoop(logger)
    {
        public bool LastPassRan { get; private set; }

        protected override Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken) => Task.FromResult(TimeSpan.FromHours(1));

        protected override Task RunLastPassAsync(CancellationToken cancellationToken)
        {
            LastPassRan = true;
            throw new IOException("the store is gone");
        }
    }
}
