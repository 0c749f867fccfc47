using Grpc.Core;
using Lifeline.Queue.V1;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Lifeline.Gateway.Tests;

/// <summary>The gateway alone: configuration checks, and a service that cannot be reached.</summary>
public sealed class StartupTests
{
    private static WebApplication Build(Dictionary<string, string?> settings) => GatewayApplication.Build([], b =>
    {
        b.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Gateway:GrpcEndpoint"] = "127.0.0.1:0",
            ["Gateway:RestEndpoint"] = "127.0.0.1:0",
        });
        b.Configuration.AddInMemoryCollection(TestIdentity.Settings);
        b.Configuration.AddInMemoryCollection(settings);
        b.Logging.SetMinimumLevel(LogLevel.Warning);
    });

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_bad_api_key_setting_stops_the_gateway_with_a_message_naming_it()
    {
        await using var app = Build(new()
        {
            ["services:queue:grpc:0"] = "http://127.0.0.1:1",
            ["Gateway:ApiKeys:0:Name"] = "k",
            ["Gateway:ApiKeys:0:Tenant"] = "Not A Tenant",
            ["Gateway:ApiKeys:0:Role"] = "admin",
            ["Gateway:ApiKeys:0:Sha256"] = "abc",
            ["Gateway:ApiKeys:1:Name"] = "would-be-service",
            ["Gateway:ApiKeys:1:Tenant"] = "default",
            ["Gateway:ApiKeys:1:Role"] = "service",
            ["Gateway:ApiKeys:1:Sha256"] = Security.ApiKeyAuthenticationHandler.Hash("k1"),
            ["Gateway:ApiKeys:2:Name"] = "admin",
            ["Gateway:ApiKeys:2:Tenant"] = "default",
            ["Gateway:ApiKeys:2:Role"] = "platform-admin",
            ["Gateway:ApiKeys:2:Sha256"] = Security.ApiKeyAuthenticationHandler.Hash("k2"),
        });
        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
        Assert.Contains("Gateway:ApiKeys:0:Tenant", ex.Message);
        Assert.Contains("Gateway:ApiKeys:0:Role", ex.Message);
        Assert.Contains("Gateway:ApiKeys:0:Sha256", ex.Message);
        Assert.Contains("Gateway:ApiKeys:1:Role 'service'", ex.Message); // no credential may be a service
        Assert.DoesNotContain("Gateway:ApiKeys:2", ex.Message);
    }

    [Fact]
    public void Without_any_service_address_the_gateway_refuses_to_start()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Build([]));
        Assert.Contains("services:<name>:grpc:0", ex.Message);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_service_that_cannot_be_reached_is_unavailable_not_a_bare_502()
    {
        var port = Lifeline.Testing.FreePort.Next();
        var app = Build(new()
        {
            ["services:queue:grpc:0"] = $"http://127.0.0.1:{port}",
            ["Gateway:ApiKeys:0:Name"] = "reader",
            ["Gateway:ApiKeys:0:Tenant"] = "default",
            ["Gateway:ApiKeys:0:Role"] = "reader",
            ["Gateway:ApiKeys:0:Sha256"] = Security.ApiKeyAuthenticationHandler.Hash("the-key"),
        });
        await app.StartAsync();
        await using var gateway = new GatewayHost(app);
        var queue = new QueueService.QueueServiceClient(gateway.Channel);
        var ex = await Assert.ThrowsAsync<RpcException>(() => queue.GetQueueStatsAsync(new GetQueueStatsRequest(), new Metadata { { "x-api-key", "the-key" } }).ResponseAsync);
        Assert.Equal(StatusCode.Unavailable, ex.StatusCode);

        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queue/stats") { Headers = { { "x-api-key", "the-key" } } };
        using var response = await gateway.RestClient.SendAsync(request);
        Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, response.StatusCode);
    }
}
