using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using static Lifeline.Gateway.Tests.TestSupport;

namespace Lifeline.Gateway.Tests;

/// <summary>Authentication, roles and tenants through the gateway, over gRPC and REST.</summary>
public sealed class SecurityTests(GatewayEnvironment env) : IClassFixture<GatewayEnvironment>
{
    private GatewayHost Gateway => env.Gateway;

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_call_without_credential_is_unauthenticated_over_grpc_and_401_over_rest()
    {
        var before = env.QueueRequests.Count;
        var ex = await RefusedAsync(() => Gateway.Queue(null).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync, StatusCode.Unauthenticated);
        Assert.Contains("credential", ex.Status.Detail, StringComparison.OrdinalIgnoreCase);

        using var response = await Gateway.RestClient.GetAsync("/api/v1/queue/stats");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal(16, body.RootElement.GetProperty("code").GetInt32());
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);

        Assert.Equal(before, env.QueueRequests.Count); // refused at the door: the queue saw nothing
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_unknown_key_is_unauthenticated_in_either_header()
    {
        var ex = await RefusedAsync(
            () => Gateway.Queue(null, ("authorization", "Bearer not-a-key")).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync,
            StatusCode.Unauthenticated);
        Assert.Equal("INVALID_CREDENTIAL", ex.GetRpcStatus()!.GetDetail<Google.Rpc.ErrorInfo>().Reason);

        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queue/stats") { Headers = { { "x-api-key", "not-a-key" } } };
        using var response = await Gateway.RestClient.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_x_api_key_header_is_accepted()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/api/v1/queue/stats") { Headers = { { "x-api-key", GatewayEnvironment.Key("default-reader") } } };
        using var response = await Gateway.RestClient.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cross_tenant_service_calls_are_refused_to_every_credential_even_an_operator()
    {
        var before = env.QueueRequests.Count;
        var queue = await RefusedAsync(
            () => Gateway.Queue("default-operator").ListActiveTenantsAsync(new Lifeline.Queue.V1.ListActiveTenantsRequest()).ResponseAsync,
            StatusCode.PermissionDenied);
        Assert.Equal("ROLE_NOT_ALLOWED", queue.GetRpcStatus()!.GetDetail<Google.Rpc.ErrorInfo>().Reason);
        var registry = await RefusedAsync(
            () => Gateway.Registry("default-operator").ListActiveTenantsAsync(new Lifeline.Registry.V1.ListActiveTenantsRequest()).ResponseAsync,
            StatusCode.PermissionDenied);
        Assert.Equal("ROLE_NOT_ALLOWED", registry.GetRpcStatus()!.GetDetail<Google.Rpc.ErrorInfo>().Reason);
        Assert.Equal(before, env.QueueRequests.Count); // refused at the gateway, never forwarded
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_reader_cannot_lease_and_a_worker_cannot_redrive_permission_denied_and_403()
    {
        var before = env.QueueRequests.Count;
        var ex = await RefusedAsync(
            () => Gateway.Queue("default-reader").LeaseTasksAsync(Lease(Guid.NewGuid().ToString(), "any.type")).ResponseAsync,
            StatusCode.PermissionDenied);
        Assert.Equal("ROLE_NOT_ALLOWED", ex.GetRpcStatus()!.GetDetail<Google.Rpc.ErrorInfo>().Reason);
        await RefusedAsync(
            () => Gateway.Queue("default-worker").RedriveDeadLettersAsync(new RedriveDeadLettersRequest()).ResponseAsync,
            StatusCode.PermissionDenied);
        await RefusedAsync(
            () => Gateway.Registry("default-worker").DrainWorkerAsync(new DrainWorkerRequest { WorkerId = Guid.NewGuid().ToString() }).ResponseAsync,
            StatusCode.PermissionDenied);

        using var lease = new HttpRequestMessage(HttpMethod.Post, "/api/v1/tasks:lease")
        {
            Headers = { { "authorization", "Bearer " + GatewayEnvironment.Key("default-reader") } },
            Content = JsonContent.Create(new { workerId = Guid.NewGuid().ToString(), taskTypes = new[] { "x" } }),
        };
        using var leaseResponse = await Gateway.RestClient.SendAsync(lease);
        Assert.Equal(HttpStatusCode.Forbidden, leaseResponse.StatusCode);

        using var redrive = new HttpRequestMessage(HttpMethod.Post, "/api/v1/dead-letters:redrive")
        {
            Headers = { { "authorization", "Bearer " + GatewayEnvironment.Key("default-worker") } },
            Content = JsonContent.Create(new { }),
        };
        using var redriveResponse = await Gateway.RestClient.SendAsync(redrive);
        Assert.Equal(HttpStatusCode.Forbidden, redriveResponse.StatusCode);
        Assert.Equal(before, env.QueueRequests.Count); // refused at the door: nothing reached the queue
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Each_role_may_call_what_it_needs()
    {
        var type = NewType("roles");
        var task = (await Gateway.Queue("default-worker").EnqueueTaskAsync(Enqueue(type))).Task;
        var worker = (await Gateway.Registry("default-worker").RegisterWorkerAsync(Registration(type))).Worker;
        var leased = await Gateway.Queue("default-worker").LeaseTasksAsync(Lease(worker.Id, type));
        Assert.Equal(task.Id, Assert.Single(leased.Tasks).Id);

        Assert.Equal(task.Id, (await Gateway.Queue("default-reader").GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Id);
        await Gateway.Queue("default-operator").CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id, Reason = "test" });
        await Gateway.Queue("default-operator").RedriveDeadLettersAsync(new RedriveDeadLettersRequest { Type = type });
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_tenant_comes_from_the_credential_and_a_forged_tenant_header_is_ignored()
    {
        var task = (await Gateway.Queue("default-worker").EnqueueTaskAsync(Enqueue(NewType("tenancy")))).Task;

        await RefusedAsync(() => Gateway.Queue("acme-worker").GetTaskAsync(new GetTaskRequest { TaskId = task.Id }).ResponseAsync, StatusCode.NotFound);
        await RefusedAsync(
            () => Gateway.Queue("acme-operator", ("x-lifeline-tenant", "default")).GetTaskAsync(new GetTaskRequest { TaskId = task.Id }).ResponseAsync,
            StatusCode.NotFound);
        await RefusedAsync(
            () => Gateway.Queue("acme-operator", ("x-lifeline-tenant", "default")).CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id }).ResponseAsync,
            StatusCode.NotFound);

        using var request = new HttpRequestMessage(HttpMethod.Get, $"/api/v1/tasks/{task.Id}")
        {
            Headers = { { "x-api-key", GatewayEnvironment.Key("acme-worker") }, { "x-lifeline-tenant", "default" } },
        };
        using var response = await Gateway.RestClient.SendAsync(request);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);

        // The queue saw the credential's tenant only, and no credential at all.
        var seen = env.QueueRequests.ToArray();
        Assert.DoesNotContain(seen, h => h.ContainsKey("authorization") || h.ContainsKey("x-api-key"));
        Assert.All(seen, h => Assert.DoesNotContain(",", h.GetValueOrDefault("x-lifeline-tenant") ?? ""));

        // Still there for its own tenant.
        Assert.Equal(task.Id, (await Gateway.Queue("default-reader").GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Id);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_jwt_bearer_token_carries_tenant_and_role()
    {
        var handler = new JsonWebTokenHandler();
        string Token(string tenant, object roles, string key = GatewayEnvironment.SigningKey) => handler.CreateToken(new SecurityTokenDescriptor
        {
            Claims = new Dictionary<string, object> { ["sub"] = "alice", ["tenant"] = tenant, ["roles"] = roles },
            Expires = DateTime.UtcNow.AddMinutes(5),
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(System.Text.Encoding.UTF8.GetBytes(key)), SecurityAlgorithms.HmacSha256),
        });

        var task = (await Gateway.Queue(null, ("authorization", "Bearer " + Token("acme", new[] { "worker" }))).EnqueueTaskAsync(Enqueue(NewType("jwt")))).Task;
        Assert.Equal(task.Id, (await Gateway.Queue("acme-worker").GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Id);
        await RefusedAsync(() => Gateway.Queue("default-worker").GetTaskAsync(new GetTaskRequest { TaskId = task.Id }).ResponseAsync, StatusCode.NotFound);

        await RefusedAsync(
            () => Gateway.Queue(null, ("authorization", "Bearer " + Token("acme", "reader"))).EnqueueTaskAsync(Enqueue("x")).ResponseAsync,
            StatusCode.PermissionDenied);
        await RefusedAsync(
            () => Gateway.Queue(null, ("authorization", "Bearer " + Token("acme", "operator", "a-different-key-of-at-least-32-bytes!!"))).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync,
            StatusCode.Unauthenticated);
    }
}
