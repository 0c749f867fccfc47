using Grpc.Core;
using Grpc.Health.V1;
using Lifeline.Backup.V1;
using Lifeline.Checkpoint.V1;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Clients;
using Lifeline.ServiceDefaults.Security;
using Lifeline.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using ContractDescriptor = Google.Protobuf.Reflection.ServiceDescriptor;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.ServiceDefaults.Tests;

/// <summary>
/// Service-to-service clients (<see cref="ServiceClientRegistration"/>) against a real gRPC server on loopback
/// (<see cref="PeerServer"/>) through real channels: addresses checked when the service is built, identity and tenant
/// on every call of every client, a default deadline, UNAVAILABLE retried on idempotent calls and nowhere else.
/// </summary>
public sealed class ServiceClientTests : IAsyncLifetime
{
    private const string ListWorkers = "/lifeline.registry.v1.RegistryService/ListWorkers";
    private const string RegisterWorker = "/lifeline.registry.v1.RegistryService/RegisterWorker";
    private const string EnqueueTask = "/lifeline.queue.v1.QueueService/EnqueueTask";
    private const string GetTask = "/lifeline.queue.v1.QueueService/GetTask";

    private static readonly string[] Peers = ["queue", "registry", "checkpoint", "backup"];

    private PeerServer _server = null!;

    public async Task InitializeAsync() => _server = await PeerServer.StartAsync();

    public async Task DisposeAsync() => await _server.DisposeAsync();

    [Fact]
    public void A_required_client_without_an_address_or_with_a_bad_one_stops_the_service_naming_the_setting()
    {
        var missing = Assert.Throws<InvalidOperationException>(() => Client(new(), b => b.AddServiceClient<RegistryService.RegistryServiceClient>("registry")));
        Assert.StartsWith("services:registry:grpc:0 is not set: Lifeline.Probe calls the registry service", missing.Message, StringComparison.Ordinal);
        Assert.Contains("services__registry__grpc__0", missing.Message, StringComparison.Ordinal);

        var blank = Assert.Throws<InvalidOperationException>(() =>
            Client(new() { ["services:queue:grpc:0"] = " " }, b => b.AddServiceClient<QueueService.QueueServiceClient>("queue")));
        Assert.StartsWith("services:queue:grpc:0 is not set", blank.Message, StringComparison.Ordinal);

        foreach (var bad in new[] { "registry:5101", "127.0.0.1:5101", "ftp://127.0.0.1:5101", "/relative" })
        {
            var notUrl = Assert.Throws<InvalidOperationException>(() =>
                Client(new() { ["services:registry:grpc:0"] = bad }, b => b.AddOptionalServiceClient<RegistryService.RegistryServiceClient>("registry")));
            Assert.Equal($"services:registry:grpc:0 '{bad}' is not an http(s) URL such as http://127.0.0.1:5101.", notUrl.Message);
        }
    }

    [Fact]
    public void An_optional_client_without_an_address_is_absent_explicitly_and_says_which_setting_is_missing()
    {
        using var host = Client(new(), b => b.AddOptionalServiceClient<BackupService.BackupServiceClient>("backup"));

        var backup = host.Services.GetRequiredService<OptionalServiceClient<BackupService.BackupServiceClient>>();
        Assert.False(backup.IsConfigured);
        Assert.Null(backup.Client);
        Assert.Null(host.Services.GetService<BackupService.BackupServiceClient>());
        var peers = host.Services.GetRequiredService<PeerServices>();
        Assert.False(peers.Has("backup"));
        Assert.Equal("services:backup:grpc:0 is not configured: this service cannot reach the backup service.",
            Assert.Throws<InvalidOperationException>(() => backup.Required).Message);
        Assert.Equal("services:backup:grpc:0 is not configured: this service cannot reach the backup service.",
            Assert.Throws<InvalidOperationException>(() => peers.Health("backup")).Message);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Every_client_of_every_peer_carries_the_service_identity_acting_for_the_tenant_the_call_names()
    {
        using var host = Client(Addresses(_server.Address), AllPeers);
        var s = host.Services;
        var ct = CancellationToken.None;

        await Answered(s.GetRequiredService<QueueService.QueueServiceClient>().GetTaskAsync(new GetTaskRequest { TaskId = "t" }, ServiceCall.For("acme", ct)));
        await Answered(s.GetRequiredService<RegistryService.RegistryServiceClient>().ListWorkersAsync(new ListWorkersRequest(), ServiceCall.For("acme", ct)));
        await Answered(s.GetRequiredService<OptionalServiceClient<CheckpointService.CheckpointServiceClient>>().Required
            .GetWorkflowAsync(new GetWorkflowRequest { WorkflowId = "w" }, ServiceCall.For("acme", ct)));
        await Answered(s.GetRequiredService<OptionalServiceClient<BackupService.BackupServiceClient>>().Required
            .ListBackupsAsync(new ListBackupsRequest(), ServiceCall.For("acme", ct)));
        using (var watch = s.GetRequiredService<RegistryService.RegistryServiceClient>().WatchWorkers(new WatchWorkersRequest(), ServiceCall.For("acme", ct)))
        {
            Assert.True(await watch.ResponseStream.MoveNext(ct));
        }
        foreach (var peer in Peers)
        {
            await s.GetRequiredService<PeerServices>().Health(peer).CheckAsync(new HealthCheckRequest(), ServiceCall.For("acme", ct));
        }
        var actingForAcme = _server.Arrivals.ToArray();

        // Without a tenant, the call acts across tenants; an identity header a caller slipped into the options is replaced.
        await Answered(s.GetRequiredService<QueueService.QueueServiceClient>().GetTaskAsync(new GetTaskRequest { TaskId = "t" }, ServiceCall.AcrossTenants(ct)));
        var forged = ServiceCall.For("acme", ct);
        forged.Headers!.Add(IdentityTokens.HeaderName, TestIdentity.Tokens.Mint("mallory", "other", Role.PlatformAdmin, "lifeline-gateway"));
        await Answered(s.GetRequiredService<QueueService.QueueServiceClient>().GetTaskAsync(new GetTaskRequest { TaskId = "t" }, forged));

        Assert.Equal(
            ["/lifeline.queue.v1.QueueService/GetTask", ListWorkers, "/lifeline.checkpoint.v1.CheckpointService/GetWorkflow",
             "/lifeline.backup.v1.BackupService/ListBackups", "/lifeline.registry.v1.RegistryService/WatchWorkers",
             .. Peers.Select(_ => "/grpc.health.v1.Health/Check")],
            actingForAcme.Select(a => a.Method));
        var all = _server.Arrivals.ToArray();
        Assert.Equal(actingForAcme.Length + 2, all.Length);
        var identities = new List<CallerIdentity>();
        foreach (var arrival in all)
        {
            Assert.False(arrival.MarkerLeaked, $"{arrival.Method} carried the in-process tenant marker");
            var (identity, refusal) = await TestIdentity.Tokens.VerifyAsync(arrival.Identity ?? "");
            identities.Add(identity ?? throw new Xunit.Sdk.XunitException($"{arrival.Method}: {refusal}"));
        }
        Assert.All(identities, i => Assert.Equal(("lifeline-probe", Role.Service, "lifeline-probe"), (i.Subject, i.Role, i.Issuer)));
        Assert.Equal([.. actingForAcme.Select(_ => (string?)"acme"), null, "acme"], identities.Select(i => i.Tenant));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_call_without_a_deadline_gets_the_default_and_one_with_a_deadline_keeps_it()
    {
        using var host = Client(Addresses(_server.Address), AllPeers);
        var registry = host.Services.GetRequiredService<RegistryService.RegistryServiceClient>();
        var ct = CancellationToken.None;

        var before = DateTime.UtcNow;
        await registry.ListWorkersAsync(new ListWorkersRequest(), ServiceCall.For("acme", ct));
        await registry.ListWorkersAsync(new ListWorkersRequest()); // no options at all
        await registry.ListWorkersAsync(new ListWorkersRequest(), ServiceCall.For("acme", ct, TimeSpan.FromSeconds(5)));
        using (var watch = registry.WatchWorkers(new WatchWorkersRequest(), ServiceCall.For("acme", ct)))
        {
            Assert.True(await watch.ResponseStream.MoveNext(ct));
        }
        var after = DateTime.UtcNow;

        var deadlines = _server.Arrivals.Select(a => a.Deadline).ToArray();
        Assert.Equal(4, deadlines.Length);
        AssertWithin(deadlines[0], before + TimeSpan.FromSeconds(30), after + TimeSpan.FromSeconds(30));
        AssertWithin(deadlines[1], before + TimeSpan.FromSeconds(30), after + TimeSpan.FromSeconds(30));
        AssertWithin(deadlines[2], before + TimeSpan.FromSeconds(5), after + TimeSpan.FromSeconds(5));
        AssertWithin(deadlines[3], before + TimeSpan.FromHours(1), after + TimeSpan.FromHours(1));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_idempotent_call_rides_out_a_peer_that_refuses_connections_until_it_is_up()
    {
        await using var proxy = FaultProxy.Start(_server.Address.Port);
        using var host = Client(new() { ["services:registry:grpc:0"] = $"http://127.0.0.1:{proxy.Port}" },
            b => b.AddServiceClient<RegistryService.RegistryServiceClient>("registry"));
        var registry = host.Services.GetRequiredService<RegistryService.RegistryServiceClient>();

        // The peer is down for the first two connection attempts (each reset as it opens), then up.
        proxy.RefuseNext(2);
        await registry.ListWorkersAsync(new ListWorkersRequest(), ServiceCall.For("acme", CancellationToken.None));

        Assert.True(proxy.Accepted >= 3, $"{proxy.Accepted} connections");
        Assert.Single(_server.Of(ListWorkers));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task UNAVAILABLE_after_the_peer_did_the_work_is_retried_for_an_idempotent_call_and_never_for_a_write()
    {
        using var host = Client(Addresses(_server.Address), AllPeers);
        var registry = host.Services.GetRequiredService<RegistryService.RegistryServiceClient>();
        var queue = host.Services.GetRequiredService<QueueService.QueueServiceClient>();
        var ct = CancellationToken.None;

        // A write: the peer recorded it, then the caller saw UNAVAILABLE. A retry would make it twice; there is none.
        _server.FailNext(RegisterWorker, 1);
        _server.FailNext(EnqueueTask, 1);
        var register = await Assert.ThrowsAsync<RpcException>(() => registry.RegisterWorkerAsync(new RegisterWorkerRequest(), ServiceCall.For("acme", ct)).ResponseAsync);
        var enqueue = await Assert.ThrowsAsync<RpcException>(() => queue.EnqueueTaskAsync(new EnqueueTaskRequest(), ServiceCall.For("acme", ct)).ResponseAsync);
        Assert.Equal((StatusCode.Unavailable, StatusCode.Unavailable), (register.StatusCode, enqueue.StatusCode));
        Assert.Single(_server.Of(RegisterWorker));
        Assert.Single(_server.Of(EnqueueTask));

        // A read, and the same fault three times: retried until it answers (four attempts at most).
        _server.FailNext(ListWorkers, 1);
        _server.FailNext(GetTask, 3);
        await registry.ListWorkersAsync(new ListWorkersRequest(), ServiceCall.For("acme", ct));
        await queue.GetTaskAsync(new GetTaskRequest { TaskId = "t" }, ServiceCall.For("acme", ct));
        Assert.Equal(2, _server.Of(ListWorkers).Count);
        Assert.Equal(4, _server.Of(GetTask).Count);

        // Past the attempts: the caller sees UNAVAILABLE after four.
        _server.FailNext(GetTask, 4);
        var exhausted = await Assert.ThrowsAsync<RpcException>(() => queue.GetTaskAsync(new GetTaskRequest { TaskId = "t" }, ServiceCall.For("acme", ct)).ResponseAsync);
        Assert.Equal(StatusCode.Unavailable, exhausted.StatusCode);
        Assert.Equal(8, _server.Of(GetTask).Count);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_write_through_a_peer_that_refuses_the_connection_fails_once_and_is_not_retried()
    {
        await using var proxy = FaultProxy.Start(_server.Address.Port);
        using var host = Client(new() { ["services:queue:grpc:0"] = $"http://127.0.0.1:{proxy.Port}" },
            b => b.AddServiceClient<QueueService.QueueServiceClient>("queue"));
        var queue = host.Services.GetRequiredService<QueueService.QueueServiceClient>();

        proxy.RefuseNext(1);
        var refused = await Assert.ThrowsAsync<RpcException>(() => queue.EnqueueTaskAsync(new EnqueueTaskRequest(), ServiceCall.For("acme", CancellationToken.None)).ResponseAsync);

        Assert.Equal(StatusCode.Unavailable, refused.StatusCode);
        Assert.Empty(_server.Of(EnqueueTask));
        await queue.EnqueueTaskAsync(new EnqueueTaskRequest(), ServiceCall.For("acme", CancellationToken.None)); // the caller's own retry goes through
        Assert.Single(_server.Of(EnqueueTask));
    }

    /// <summary>The retried methods, checked against the compiled contracts rather than a list of the cases thought of.</summary>
    [Fact]
    public void Exactly_the_unary_reads_and_the_two_idempotent_writes_of_each_contract_are_retried()
    {
        ContractDescriptor[] contracts = [QueueService.Descriptor, RegistryService.Descriptor, CheckpointService.Descriptor, BackupService.Descriptor];
        string[] idempotentWrites = ["RecoverTask", "RecordTaskOutcomes"];
        foreach (var contract in contracts)
        {
            var config = RetriedCalls.For(contract)!;
            var method = Assert.Single(config.MethodConfigs);
            Assert.Equal(new[] { StatusCode.Unavailable }, method.RetryPolicy!.RetryableStatusCodes);
            Assert.Equal(4, method.RetryPolicy.MaxAttempts);
            var retried = method.Names.Select(n => n.Method).Order(StringComparer.Ordinal).ToArray();
            Assert.All(method.Names, n => Assert.Equal(contract.FullName, n.Service));

            var expected = contract.Methods
                .Where(m => !m.IsClientStreaming && !m.IsServerStreaming)
                .Where(m => m.Name.StartsWith("Get", StringComparison.Ordinal) || m.Name.StartsWith("List", StringComparison.Ordinal)
                    || m.Name.StartsWith("Find", StringComparison.Ordinal) || m.Name.StartsWith("Diff", StringComparison.Ordinal)
                    || idempotentWrites.Contains(m.Name))
                .Select(m => m.Name).Order(StringComparer.Ordinal).ToArray();
            Assert.Equal(expected, retried);
        }
        Assert.Null(RetriedCalls.For(Recovery.V1.RecoveryService.Descriptor));
        Assert.Null(RetriedCalls.For(Health.Descriptor));
    }

    private static void AssertWithin(DateTime actual, DateTime earliest, DateTime latest)
    {
        var slack = TimeSpan.FromSeconds(1); // the server reads the remaining time from grpc-timeout, rounded
        Assert.InRange(actual, earliest - slack, latest + slack);
    }

    /// <summary>The call reached the peer and came back (UNIMPLEMENTED counts: the peer implements few methods).</summary>
    private static async Task Answered<T>(AsyncUnaryCall<T> call)
    {
        try
        {
            await call;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unimplemented)
        {
        }
    }

    private static Dictionary<string, string?> Addresses(Uri address) =>
        Peers.ToDictionary(p => ServiceClientRegistration.AddressKey(p), _ => (string?)address.ToString());

    private static void AllPeers(IHostApplicationBuilder builder)
    {
        builder.AddServiceClient<QueueService.QueueServiceClient>("queue");
        builder.AddServiceClient<RegistryService.RegistryServiceClient>("registry");
        builder.AddOptionalServiceClient<CheckpointService.CheckpointServiceClient>("checkpoint");
        builder.AddOptionalServiceClient<BackupService.BackupServiceClient>("backup");
    }

    /// <summary>A service named <c>Lifeline.Probe</c> (identity <c>lifeline-probe</c>) with the service defaults and the given clients.</summary>
    private static IHost Client(Dictionary<string, string?> addresses, Action<IHostApplicationBuilder> clients)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { ApplicationName = "Lifeline.Probe", DisableDefaults = true });
        builder.Configuration.AddInMemoryCollection(TestIdentity.Settings);
        builder.Configuration.AddInMemoryCollection(addresses);
        builder.AddServiceDefaults();
        clients(builder);
        return builder.Build();
    }
}
