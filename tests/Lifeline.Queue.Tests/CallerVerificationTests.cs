using System.Globalization;
using System.Net;
using System.Text;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Lifeline.Queue.V1;
using Lifeline.ServiceDefaults.Security;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// Reaching the queue's port is not enough: a call needs an identity token signed with the suite's key, of a role the
/// RPC allows, naming a valid tenant. Everything else is refused before the request is read, and writes nothing.
/// </summary>
public sealed class CallerVerificationTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_call_without_an_identity_is_unauthenticated_over_grpc_and_rest_and_writes_nothing()
    {
        var before = await env.CountRowsAsync();
        var client = new QueueService.QueueServiceClient(env.Queue.Anonymous);
        var status = await RefusedAsync(() => client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(NewType("verify.none")) }).ResponseAsync,
            StatusCode.Unauthenticated);
        Assert.Equal("IDENTITY_REQUIRED", status.ErrorInfo().Reason);
        Assert.Equal("lifeline", status.ErrorInfo().Domain);

        using var http = new HttpClient { BaseAddress = env.Queue.Address, DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var rest = await http.PostAsync("/api/v1/tasks", new StringContent("""{"task":{"type":"verify.rest"}}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Unauthorized, rest.StatusCode);
        Assert.Contains("IDENTITY_REQUIRED", await rest.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        Assert.Equal(before, await env.CountRowsAsync());
    }

    public static TheoryData<string> BadTokens => ["another-key", "expired", "unsigned", "tampered", "wrong-type", "wrong-audience", "bad-tenant", "garbage"];

    [Theory(Timeout = TestTimeouts.Default)]
    [MemberData(nameof(BadTokens))]
    public async Task A_forged_expired_or_malformed_identity_is_unauthenticated_and_writes_nothing(string kind)
    {
        var before = await env.CountRowsAsync();
        var token = BadToken(kind);
        var client = new QueueService.QueueServiceClient(env.Queue.Anonymous.Intercept(m =>
        {
            m.Add(IdentityTokens.HeaderName, token);
            return m;
        }));

        var status = await RefusedAsync(() => client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(NewType("verify.bad")) }).ResponseAsync,
            StatusCode.Unauthenticated);
        Assert.Equal("IDENTITY_INVALID", status.ErrorInfo().Reason);
        await RefusedAsync(() => client.ListTasksAsync(new ListTasksRequest()).ResponseAsync, StatusCode.Unauthenticated);
        Assert.Equal(before, await env.CountRowsAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_role_in_the_identity_is_checked_by_the_service_too()
    {
        var type = NewType("verify.roles");
        var reader = new QueueService.QueueServiceClient(env.Queue.As("acme", Role.Reader));
        var worker = new QueueService.QueueServiceClient(env.Queue.As("acme", Role.Worker));

        var denied = await RefusedAsync(() => reader.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type) }).ResponseAsync, StatusCode.PermissionDenied);
        Assert.Equal("ROLE_NOT_ALLOWED", denied.ErrorInfo().Reason);
        var task = (await worker.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type) })).Task;
        Assert.Equal(task.Id, (await reader.GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Id);
        await RefusedAsync(() => worker.CancelTaskAsync(new CancelTaskRequest { TaskId = task.Id }).ResponseAsync, StatusCode.PermissionDenied);

        // Looking across tenants is for services only, a platform admin's identity included.
        var admin = new QueueService.QueueServiceClient(env.Queue.As("acme", Role.PlatformAdmin));
        await RefusedAsync(() => admin.ListActiveTenantsAsync(new ListActiveTenantsRequest()).ResponseAsync, StatusCode.PermissionDenied);
        var service = new QueueService.QueueServiceClient(env.Queue.Anonymous.As(null));
        Assert.Contains("acme", (await service.ListActiveTenantsAsync(new ListActiveTenantsRequest())).Tenants);

        // A service identity that names no tenant cannot touch one tenant's tasks: there is no default tenant.
        var noTenant = await RefusedAsync(() => service.GetTaskAsync(new GetTaskRequest { TaskId = task.Id }).ResponseAsync, StatusCode.PermissionDenied);
        Assert.Contains("names no tenant", noTenant.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_callers_with_valid_and_forged_identities_each_get_their_own_answer()
    {
        // Verified identities are remembered: a race must never hand one caller's identity to another.
        var type = NewType("verify.race");
        var tenants = Enumerable.Range(0, 8).Select(i => $"race{i}-{Guid.NewGuid():N}"[..12]).ToArray();
        var forged = BadToken("another-key");
        var accepted = new int[tenants.Length];
        var refused = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, 400), new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (i, ct) =>
        {
            var tenant = i % tenants.Length;
            if (i % 5 == 0)
            {
                var client = new QueueService.QueueServiceClient(env.Queue.Anonymous.Intercept(m =>
                {
                    m.Add(IdentityTokens.HeaderName, forged);
                    return m;
                }));
                var ex = await Assert.ThrowsAsync<RpcException>(async () => await client.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type) }, cancellationToken: ct));
                Assert.Equal(StatusCode.Unauthenticated, ex.StatusCode);
                Interlocked.Increment(ref refused);
                return;
            }

            var own = new QueueService.QueueServiceClient(env.Queue.As(tenants[tenant], Role.Worker));
            await own.EnqueueTaskAsync(new EnqueueTaskRequest { Task = Spec(type) }, cancellationToken: ct);
            Interlocked.Increment(ref accepted[tenant]);
        });

        Assert.Equal(80, refused);
        for (var t = 0; t < tenants.Length; t++)
        {
            Assert.Equal((long)accepted[t], await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type AND tenant_id = @tenant",
                ("type", type), ("tenant", tenants[t])));
        }
        Assert.Equal(320L, await env.ScalarAsync<long>("SELECT count(*) FROM tasks WHERE type = @type", ("type", type)));
    }

    private static string BadToken(string kind)
    {
        var good = TestIdentity.Tokens.Mint("mallory", "acme", Role.PlatformAdmin, "lifeline-gateway");
        var parts = good.Split('.');
        return kind switch
        {
            "another-key" => new IdentityTokens(Microsoft.Extensions.Options.Options.Create(new IdentityOptions { SigningKey = "not-the-suite-key-0123456789abcdefghijkl" }))
                .Mint("mallory", "acme", Role.PlatformAdmin, "lifeline-gateway"),
            "expired" => new IdentityTokens(Microsoft.Extensions.Options.Options.Create(new IdentityOptions { SigningKey = TestIdentity.SigningKey }), new Shifted(TimeSpan.FromMinutes(-10)))
                .Mint("mallory", "acme", Role.Worker, "lifeline-gateway"),
            "unsigned" => Segment("""{"alg":"none","typ":"lifeline-identity+jwt"}""") + "." + parts[1] + ".",
            // The payload changed after signing: a reader made into a service.
            "tampered" => parts[0] + "." + Segment(Encoding.UTF8.GetString(Base64Url(parts[1])).Replace("platform-admin", "service", StringComparison.Ordinal)) + "." + parts[2],
            "wrong-type" => Sign("""{"alg":"HS256","typ":"JWT"}""", Payload("acme", "lifeline-services")),
            "wrong-audience" => Sign("""{"alg":"HS256","typ":"lifeline-identity+jwt"}""", Payload("acme", "someone-else")),
            "bad-tenant" => TestIdentity.Tokens.Mint("mallory", "Not A Tenant!", Role.Worker, "lifeline-gateway"),
            _ => "not.a.token",
        };
    }

    private static string Payload(string tenant, string audience)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return string.Create(CultureInfo.InvariantCulture,
            $$"""{"sub":"mallory","tenant":"{{tenant}}","role":"worker","iss":"lifeline-gateway","aud":"{{audience}}","iat":{{now}},"nbf":{{now}},"exp":{{now + 300}}}""");
    }

    /// <summary>A token signed correctly with the suite's key, with the given header and payload.</summary>
    private static string Sign(string header, string payload)
    {
        var unsigned = Segment(header) + "." + Segment(payload);
        using var hmac = new System.Security.Cryptography.HMACSHA256(Encoding.UTF8.GetBytes(TestIdentity.SigningKey));
        return unsigned + "." + Base64Url(hmac.ComputeHash(Encoding.ASCII.GetBytes(unsigned)));
    }

    private static string Segment(string json) => Base64Url(Encoding.UTF8.GetBytes(json));

    private static string Base64Url(byte[] bytes) => Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static byte[] Base64Url(string text)
    {
        var padded = text.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(padded + new string('=', (4 - (padded.Length % 4)) % 4));
    }

    private sealed class Shifted(TimeSpan by) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => base.GetUtcNow() + by;
    }
}
