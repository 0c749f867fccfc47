using System.Diagnostics;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Registry.V1;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// A registry whose PostgreSQL and Redis connections run through a <see cref="FaultProxy"/>: the store stops
/// answering, or the connection breaks mid-call. Every call must end with UNAVAILABLE (or the service's own
/// DEADLINE_EXCEEDED) and RetryInfo within its bounds, never wait forever, and the service must serve
/// normally once the network is back.
/// </summary>
public sealed class BoundedWaitTests(BoundedWaitTests.Environment env) : IClassFixture<BoundedWaitTests.Environment>
{
    public sealed class Environment() : ServiceTestEnvironment("registry_bounded")
    {
        public FaultProxy PostgresProxy { get; private set; } = null!;
        public FaultProxy RedisProxy { get; private set; } = null!;

        /// <summary>Statements time out after 2 s (of the default 30 s), so the test is short.</summary>
        public ServiceHost Registry { get; private set; } = null!;

        /// <summary>Statements may run 60 s, but the service ends any unary call after 2 s itself.</summary>
        public ServiceHost LimitedRegistry { get; private set; } = null!;

        protected override async Task OnInitializedAsync()
        {
            PostgresProxy = FaultProxy.Start(new Npgsql.NpgsqlConnectionStringBuilder(DatabaseConnectionString).Port);
            RedisProxy = FaultProxy.Start(Redis.Port);
            Registry = await StartAsync($"{PostgresProxy.Npgsql(DatabaseConnectionString)};Command Timeout=2", new());
            LimitedRegistry = await StartAsync($"{PostgresProxy.Npgsql(DatabaseConnectionString)};Command Timeout=60",
                new() { ["Lifeline:MaxUnaryCallDuration"] = "00:00:02" });
        }

        private Task<ServiceHost> StartAsync(string database, Dictionary<string, string?> extra)
        {
            var settings = new Dictionary<string, string?>(RegistryEnvironment.FastSettings)
            {
                ["ConnectionStrings:registrydb"] = database,
                ["ConnectionStrings:redis"] = $"127.0.0.1:{RedisProxy.Port},abortConnect=false",
                ["Registry:HeartbeatFlushInterval"] = "00:10:00",
            };
            foreach (var (key, value) in extra)
            {
                settings[key] = value;
            }
            return ServiceHost.StartAsync(RegistryApplication.Build, settings);
        }

        protected override async Task OnDisposingAsync()
        {
            await Registry.DisposeAsync();
            await LimitedRegistry.DisposeAsync();
            await PostgresProxy.DisposeAsync();
            await RedisProxy.DisposeAsync();
        }
    }

    private static RegistryService.RegistryServiceClient Client(ServiceHost host) => host.Registry($"bw-{Guid.NewGuid():N}"[..16]);

    private static async Task<(Google.Rpc.Status Status, TimeSpan Took)> FailsAsync<T>(Func<Task<T>> call, StatusCode code)
    {
        var clock = Stopwatch.StartNew();
        var status = await RefusedAsync(call, code);
        return (status, clock.Elapsed);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_database_that_stops_answering_mid_call_gives_UNAVAILABLE_with_RetryInfo_and_the_service_recovers()
    {
        var client = Client(env.Registry);
        var worker = await client.RegisterAsync(Registration());
        env.PostgresProxy.BlackHole(true);
        try
        {
            var (status, took) = await FailsAsync(
                () => client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id }).ResponseAsync, StatusCode.Unavailable);
            Assert.Equal("STORE_UNAVAILABLE", status.ErrorInfo().Reason);
            Assert.NotNull(status.GetDetail<RetryInfo>());
            // Statement timeout (2 s here, 30 s by default), the cancellation request given up (2 s) and the connect
            // timeout of new connections (10 s): bounded, with room for a loaded machine.
            Assert.True(took < TimeSpan.FromSeconds(40), $"took {took}");
        }
        finally
        {
            env.PostgresProxy.BlackHole(false);
        }

        // Back: the same call goes through (on a fresh connection; the broken one never returns to the pool).
        var answer = await client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id });
        Assert.NotNull(answer.Worker.DeregisteredAt);
        Assert.Equal(1L, await env.ScalarAsync<long>(
            "SELECT count(*) FROM workers WHERE id = @id AND deregistered_at IS NOT NULL", ("id", Guid.Parse(worker.Id))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_database_connection_reset_mid_call_gives_UNAVAILABLE_quickly_and_later_calls_succeed()
    {
        var client = Client(env.Registry);
        var workers = new List<Worker>();
        for (var i = 0; i < 3; i++)
        {
            workers.Add(await client.RegisterAsync(Registration()));
        }
        env.PostgresProxy.Latency(TimeSpan.FromMilliseconds(700));
        Task<GetWorkerResponse> call;
        try
        {
            call = client.GetWorkerAsync(new GetWorkerRequest { WorkerId = workers[0].Id }).ResponseAsync;
            await Task.Delay(300);
            env.PostgresProxy.ResetAll();
        }
        finally
        {
            env.PostgresProxy.Latency(TimeSpan.Zero);
        }
        var clock = Stopwatch.StartNew();
        try
        {
            // The reset may land before the call reached the wire (then it simply succeeds on a new connection).
            var answer = await call;
            Assert.Equal(workers[0].Id, answer.Worker.Id);
        }
        catch (RpcException ex)
        {
            Assert.Equal(StatusCode.Unavailable, ex.StatusCode);
            Assert.NotNull(ex.GetRpcStatus()!.GetDetail<RetryInfo>());
        }
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");

        // The pool held connections the reset broke too. The first call that meets one may fail (UNAVAILABLE with
        // RetryInfo); that failure drops the pool's idle connections, so every call after it succeeds.
        var failures = 0;
        foreach (var worker in workers.Concat(workers))
        {
            try
            {
                Assert.Equal(worker.Id, (await client.GetWorkerAsync(new GetWorkerRequest { WorkerId = worker.Id })).Worker.Id);
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable && ex.GetRpcStatus()?.GetDetail<RetryInfo>() is not null)
            {
                failures++;
            }
        }
        Assert.True(failures <= 1, $"{failures} calls failed after the reset");
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_service_ends_a_unary_call_at_its_own_limit_with_DEADLINE_EXCEEDED_and_RetryInfo_whatever_the_caller_asked()
    {
        var client = Client(env.LimitedRegistry);
        var worker = await client.RegisterAsync(Registration());
        env.PostgresProxy.BlackHole(true);
        try
        {
            // The caller allows 50 s; the service's limit is 2 s and its statements could wait 60 s.
            var (status, took) = await FailsAsync(
                () => client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id }, deadline: DateTime.UtcNow.AddSeconds(50)).ResponseAsync,
                StatusCode.DeadlineExceeded);
            Assert.Equal("SERVER_TIME_LIMIT", status.ErrorInfo().Reason);
            Assert.NotNull(status.GetDetail<RetryInfo>());
            Assert.True(took < TimeSpan.FromSeconds(15), $"took {took}");
        }
        finally
        {
            env.PostgresProxy.BlackHole(false);
        }
        var answer = await client.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = worker.Id });
        Assert.NotNull(answer.Worker.DeregisteredAt);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Redis_that_stops_answering_gives_UNAVAILABLE_with_RetryInfo_within_its_command_timeout()
    {
        var client = Client(env.Registry);
        var worker = await client.RegisterAsync(Registration());
        env.RedisProxy.BlackHole(true);
        try
        {
            var (status, took) = await FailsAsync(() => client.BeatAsync(worker), StatusCode.Unavailable);
            Assert.Equal("REDIS_UNAVAILABLE", status.ErrorInfo().Reason);
            Assert.NotNull(status.GetDetail<RetryInfo>());
            Assert.True(took < TimeSpan.FromSeconds(15), $"took {took}");
        }
        finally
        {
            env.RedisProxy.BlackHole(false);
        }
        Assert.True(await EventuallyAsync(async () =>
        {
            try
            {
                return (await client.BeatAsync(worker)).Status == WorkerStatus.Online;
            }
            catch (RpcException ex) when (ex.StatusCode == StatusCode.Unavailable)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(30)), "heartbeats did not succeed again after Redis came back");
    }
}
