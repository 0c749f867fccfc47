using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Lifeline.ServiceDefaults.Tests;

/// <summary>
/// A host stopped by a failed background service exits non-zero. Its own class: the exit code is the process's,
/// so these tests must not run alongside each other.
/// </summary>
public sealed class FailureExitCodeTests
{
    [Theory(Timeout = 30_000)]
    [InlineData(typeof(NotOnTheRuntime))]
    [InlineData(typeof(CancelledOnItsOwn))]
    public async Task A_host_stopped_by_a_failed_background_service_sets_a_non_zero_exit_code(Type service)
    {
        Environment.ExitCode = 0;
        try
        {
            using var host = Build(services => services.AddSingleton(typeof(IHostedService), service));
            await host.StartAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await host.WaitForShutdownAsync(timeout.Token); // the failure stops the host by itself

            Assert.Equal(FailureExitCode.ExitCode, Environment.ExitCode);
            Assert.Single(host.Services.GetServices<IHostedService>().OfType<FailureExitCode>().Single().Failed());
        }
        finally
        {
            Environment.ExitCode = 0;
        }
    }

    [Fact(Timeout = 30_000)]
    public async Task A_host_stopped_on_request_keeps_exit_code_zero_even_after_failed_passes()
    {
        Environment.ExitCode = 0;
        using var host = Build(services => services.AddHostedService<AlwaysFailing>());
        var loop = host.Services.GetServices<IHostedService>().OfType<AlwaysFailing>().Single();
        await host.StartAsync();
        while (loop.Calls < 3)
        {
            await Task.Delay(10);
        }

        await host.StopAsync();

        Assert.Equal(0, Environment.ExitCode);
        Assert.True(loop.ExecuteTask!.IsCompletedSuccessfully);
    }

    private static IHost Build(Action<IServiceCollection> configure)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddFailureExitCode();
        configure(builder.Services);
        return builder.Build();
    }

    /// <summary>A background service written without the runtime: its first exception stops the host.</summary>
    private sealed class NotOnTheRuntime : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            await Task.Yield();
            throw new InvalidOperationException("an exception nobody expected");
        }
    }

    /// <summary>Ends cancelled while nobody stops the host (a time limit of its own ran out).</summary>
    private sealed class CancelledOnItsOwn : BackgroundService
    {
        protected override async Task ExecuteAsync(CancellationToken stoppingToken)
        {
            await Task.Yield();
            throw new OperationCanceledException("a time limit of its own");
        }
    }

    private sealed class AlwaysFailing(ILogger<AlwaysFailing> logger)
        : BackgroundLoop(logger, new LoopBackoff(TimeSpan.FromMilliseconds(5), TimeSpan.FromMilliseconds(5)))
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        protected override Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
        {
            Interlocked.Increment(ref _calls);
            throw new InvalidOperationException("always");
        }
    }
}
