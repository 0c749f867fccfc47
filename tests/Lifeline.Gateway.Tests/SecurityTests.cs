using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Google.Rpc;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Security;
using static Lifeline.Gateway.Tests.TestSupport;

namespace Lifeline.Gateway.Tests;

/// <summary>Authentication, roles and tenants through the gateway, over gRPC and REST.</summary>
public sealed class SecurityTests(GatewayEnvironment env) : IClassFixture<GatewayEnvironment>
{
    private const string Stats = "/api/v1/queue/stats";

    private GatewayHost Gateway => env.Gateway;

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_call_without_credential_is_unauthenticated_over_grpc_and_401_over_rest()
    {
        var before = env.QueueRequests.Count;
        var ex = await RefusedAsync(() => Gateway.Queue(null).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync, StatusCode.Unauthenticated);
        Assert.Contains("credential", ex.Status.Detail, StringComparison.OrdinalIgnoreCase);
        Assert.Equal("CREDENTIAL_REQUIRED", Reason(ex));

        using var response = await Gateway.RestClient.GetAsync(Stats);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal((16, "CREDENTIAL_REQUIRED"), await RestRefusalAsync(response));
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        Assert.Null(response.Headers.WwwAuthenticate.Single().Parameter); // no error text of JwtBearer's own

        Assert.Empty(env.QueueCallsSince(before)); // refused at the door: the queue saw nothing
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_unknown_key_is_unauthenticated_in_either_header()
    {
        var ex = await RefusedAsync(
            () => Gateway.Queue(null, ("authorization", "Bearer not-a-key")).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync,
            StatusCode.Unauthenticated);
        Assert.Equal("INVALID_CREDENTIAL", Reason(ex));
        Assert.Contains("API key is not known", ex.Status.Detail, StringComparison.Ordinal);

        using var request = new HttpRequestMessage(HttpMethod.Get, Stats) { Headers = { { "x-api-key", "not-a-key" } } };
        using var response = await Gateway.RestClient.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal((16, "INVALID_CREDENTIAL"), await RestRefusalAsync(response));
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_authorization_header_that_is_not_bearer_is_refused_not_ignored()
    {
        foreach (var authorization in new[] { "Basic " + GatewayEnvironment.Key("default-reader"), "Bearer", "Bearer   " })
        {
            var ex = await RefusedAsync(
                () => Gateway.Queue(null, ("authorization", authorization)).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync,
                StatusCode.Unauthenticated);
            Assert.Equal("INVALID_CREDENTIAL", Reason(ex));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_x_api_key_header_is_accepted()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, Stats) { Headers = { { "x-api-key", GatewayEnvironment.Key("default-reader") } } };
        using var response = await Gateway.RestClient.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Open_endpoints_need_no_credential_and_a_bad_one_does_not_close_them()
    {
        foreach (var credential in new[] { null, "Bearer not-a-key", "Bearer " + TestJwt.None(TestJwt.Claims("default", "operator")) })
        {
            foreach (var path in new[] { "/health", "/openapi.json" })
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, path);
                if (credential is not null)
                {
                    request.Headers.TryAddWithoutValidation("authorization", credential);
                }

                using var response = await Gateway.RestClient.SendAsync(request);
                Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path} with {credential ?? "no credential"}: {response.StatusCode}");
            }

            var headers = credential is null ? [] : new[] { ("authorization", credential) };
            var health = new Grpc.Health.V1.Health.HealthClient(Gateway.Invoker(null, headers));
            Assert.Equal(Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus.Serving, (await health.CheckAsync(new Grpc.Health.V1.HealthCheckRequest())).Status);
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Unknown_routes_and_methods_are_not_found_without_a_credential_not_unauthenticated()
    {
        using var response = await Gateway.RestClient.GetAsync("/api/v1/nothing-here");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal((5, "UNKNOWN_ROUTE"), await RestRefusalAsync(response));

        var method = new Method<GetTaskRequest, GetTaskResponse>(MethodType.Unary, "lifeline.queue.v1.QueueService", "NoSuchMethod",
            Marshallers.Create(r => Google.Protobuf.MessageExtensions.ToByteArray(r), GetTaskRequest.Parser.ParseFrom),
            Marshallers.Create(r => Google.Protobuf.MessageExtensions.ToByteArray(r), GetTaskResponse.Parser.ParseFrom));
        await RefusedAsync(
            () => Gateway.Channel.AsyncUnaryCall(method, null, new CallOptions(), new GetTaskRequest()).ResponseAsync,
            StatusCode.Unimplemented);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Cross_tenant_service_calls_are_refused_to_every_credential_even_a_platform_admin()
    {
        var before = env.QueueRequests.Count;
        foreach (var key in new[] { "default-operator", "platform-admin" })
        {
            var queue = await RefusedAsync(
                () => Gateway.Queue(key).ListActiveTenantsAsync(new Lifeline.Queue.V1.ListActiveTenantsRequest()).ResponseAsync,
                StatusCode.PermissionDenied);
            Assert.Equal("ROLE_NOT_ALLOWED", Reason(queue));
            Assert.Equal("No credential may call lifeline.queue.v1.QueueService/ListActiveTenants: only the Lifeline services call it.", queue.Status.Detail);
            var registry = await RefusedAsync(
                () => Gateway.Registry(key).ListActiveTenantsAsync(new Lifeline.Registry.V1.ListActiveTenantsRequest()).ResponseAsync,
                StatusCode.PermissionDenied);
            Assert.Equal("ROLE_NOT_ALLOWED", Reason(registry));
        }

        // A JWT cannot claim the services' role either: it is no role at all.
        var jwt = await RefusedAsync(
            () => Gateway.Queue(null, Bearer(TestJwt.Hs256(TestJwt.Claims("default", "service")))).ListActiveTenantsAsync(new Lifeline.Queue.V1.ListActiveTenantsRequest()).ResponseAsync,
            StatusCode.Unauthenticated);
        Assert.Equal("INVALID_CREDENTIAL", Reason(jwt));
        Assert.Empty(env.QueueCallsSince(before)); // refused at the gateway, never forwarded
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_reader_cannot_lease_and_a_worker_cannot_redrive_permission_denied_and_403()
    {
        var before = env.QueueRequests.Count;
        var ex = await RefusedAsync(
            () => Gateway.Queue("default-reader").LeaseTasksAsync(Lease(Guid.NewGuid().ToString(), "any.type")).ResponseAsync,
            StatusCode.PermissionDenied);
        var info = ex.GetRpcStatus()!.GetDetail<ErrorInfo>();
        Assert.Equal("ROLE_NOT_ALLOWED", info.Reason);
        Assert.Equal("lifeline", info.Domain);
        Assert.Equal("The role 'reader' may not call lifeline.queue.v1.QueueService/LeaseTasks; it needs 'worker'.", ex.Status.Detail);
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
        Assert.Equal((7, "ROLE_NOT_ALLOWED"), await RestRefusalAsync(leaseResponse));

        using var redrive = new HttpRequestMessage(HttpMethod.Post, "/api/v1/dead-letters:redrive")
        {
            Headers = { { "authorization", "Bearer " + GatewayEnvironment.Key("default-worker") } },
            Content = JsonContent.Create(new { }),
        };
        using var redriveResponse = await Gateway.RestClient.SendAsync(redrive);
        Assert.Equal(HttpStatusCode.Forbidden, redriveResponse.StatusCode);
        Assert.Equal((7, "ROLE_NOT_ALLOWED"), await RestRefusalAsync(redriveResponse));
        Assert.Empty(env.QueueCallsSince(before)); // refused at the door: nothing reached the queue
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
        await Gateway.Queue("platform-admin").RedriveDeadLettersAsync(new RedriveDeadLettersRequest { Type = type });
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_tenant_comes_from_the_credential_and_a_forged_tenant_header_is_ignored()
    {
        var task = (await Gateway.Queue("default-worker").EnqueueTaskAsync(Enqueue(NewType("tenancy")))).Task;

        var before = env.QueueRequests.Count;
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

        // The queue was told the credential's tenant, and saw no credential at all (other calls of the shared
        // environment, health checks say, may arrive meanwhile: only these four count).
        var seen = env.QueueCallsSince(before).Where(h => h[GatewayEnvironment.PathKey] is var path
            && (path.EndsWith("/GetTask", StringComparison.Ordinal) || path.EndsWith("/CancelTask", StringComparison.Ordinal)
                || path.EndsWith(task.Id, StringComparison.Ordinal))).ToArray();
        Assert.Equal(4, seen.Length);
        Assert.DoesNotContain(seen, h => h.ContainsKey("authorization") || h.ContainsKey("x-api-key"));
        foreach (var headers in seen)
        {
            var identity = await IdentitySeenAsync(headers);
            Assert.Equal("acme", identity.Tenant);
            Assert.Equal("lifeline-gateway", identity.Issuer);
        }

        // Still there for its own tenant.
        Assert.Equal(task.Id, (await Gateway.Queue("default-reader").GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Id);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_client_sent_identity_header_is_replaced_even_a_validly_signed_one()
    {
        var task = (await Gateway.Queue("default-worker").EnqueueTaskAsync(Enqueue(NewType("forged")))).Task;

        // Signed with the suite's key, as a service acting for the default tenant: still only the credential counts.
        var forged = TestIdentity.Tokens.Mint("lifeline-queue", "default", Role.Service, "lifeline-queue");
        var before = env.QueueRequests.Count;
        await RefusedAsync(
            () => Gateway.Queue("acme-worker", (IdentityTokens.HeaderName, forged)).GetTaskAsync(new GetTaskRequest { TaskId = task.Id }).ResponseAsync,
            StatusCode.NotFound);
        using (var request = new HttpRequestMessage(HttpMethod.Get, $"/api/v1/tasks/{task.Id}")
        {
            Headers = { { "x-api-key", GatewayEnvironment.Key("acme-worker") }, { IdentityTokens.HeaderName, forged } },
        })
        {
            using var response = await Gateway.RestClient.SendAsync(request);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        }

        var seen = env.QueueCallsSince(before).ToArray();
        Assert.Equal(2, seen.Length);
        foreach (var headers in seen)
        {
            Assert.NotEqual(forged, headers[IdentityTokens.HeaderName]);
            Assert.DoesNotContain(",", headers[IdentityTokens.HeaderName]); // one value, not the forged one appended
            var identity = await IdentitySeenAsync(headers);
            Assert.Equal(("acme-worker", "acme", Role.Worker), (identity.Subject, identity.Tenant, identity.Role));
        }

        // The identity header alone is no credential.
        var ex = await RefusedAsync(
            () => Gateway.Queue(null, (IdentityTokens.HeaderName, forged)).GetTaskAsync(new GetTaskRequest { TaskId = task.Id }).ResponseAsync,
            StatusCode.Unauthenticated);
        Assert.Equal("CREDENTIAL_REQUIRED", Reason(ex));
        Assert.Equal(2, env.QueueCallsSince(before).Count);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_jwt_bearer_token_carries_tenant_and_role()
    {
        var task = (await Gateway.Queue(null, Bearer(TestJwt.Hs256(TestJwt.Claims("acme", new[] { "worker" })))).EnqueueTaskAsync(Enqueue(NewType("jwt")))).Task;
        Assert.Equal(task.Id, (await Gateway.Queue("acme-worker").GetTaskAsync(new GetTaskRequest { TaskId = task.Id })).Task.Id);
        await RefusedAsync(() => Gateway.Queue("default-worker").GetTaskAsync(new GetTaskRequest { TaskId = task.Id }).ResponseAsync, StatusCode.NotFound);

        // The highest credential role counts, in either claim and either form; an unknown one is ignored.
        var before = env.QueueRequests.Count;
        await Gateway.Queue(null, Bearer(TestJwt.Hs256(TestJwt.Claims("acme", new[] { "reader", "superuser", "operator" }, subject: "bob"))))
            .RedriveDeadLettersAsync(new RedriveDeadLettersRequest { Type = NewType("jwt") });
        var identity = await IdentitySeenAsync(env.QueueCallsSince(before).Single());
        Assert.Equal(("bob", "acme", Role.Operator), (identity.Subject, identity.Tenant, identity.Role));

        await RefusedAsync(
            () => Gateway.Queue(null, Bearer(TestJwt.Hs256(TestJwt.Claims("acme", "reader")))).EnqueueTaskAsync(Enqueue("x")).ResponseAsync,
            StatusCode.PermissionDenied);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_platform_admin_jwt_is_accepted_and_the_queue_is_told_so()
    {
        var token = TestJwt.Hs256(TestJwt.Claims("default", "platform-admin", subject: "root"));
        var before = env.QueueRequests.Count;
        await Gateway.Queue(null, Bearer(token)).RedriveDeadLettersAsync(new RedriveDeadLettersRequest { Type = NewType("admin") });

        using var request = new HttpRequestMessage(HttpMethod.Get, Stats) { Headers = { { "authorization", "Bearer " + token } } };
        using var response = await Gateway.RestClient.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);

        var seen = env.QueueCallsSince(before).ToArray();
        Assert.Equal(2, seen.Length);
        foreach (var headers in seen)
        {
            var identity = await IdentitySeenAsync(headers);
            Assert.Equal(("root", "default", Role.PlatformAdmin), (identity.Subject, identity.Tenant, identity.Role));
        }
    }

    /// <summary>
    /// Tokens an attacker or a careless issuer would send (made when a test runs: they have lifetimes), and a word of the
    /// reason the gateway gives.
    /// </summary>
    private static readonly Dictionary<string, (Func<string> Token, string Reason)> Forged = new()
    {
        ["alg none"] = (() => TestJwt.None(TestJwt.Claims("acme", "operator")), "signature"),
        ["alg none with the signature of a valid token"] = (() => NoneWithSignature(TestJwt.Hs256(TestJwt.Claims("acme", "operator"))), "signature"),
        ["signed with another key"] = (() => TestJwt.Hs256(TestJwt.Claims("acme", "operator"), "a-different-key-of-at-least-32-bytes!!"), "signature"),
        ["signed with the identity key"] = (() => TestJwt.Hs256(TestJwt.Claims("acme", "operator"), TestIdentity.SigningKey), "signature"),
        ["HS512 under the gateway's key"] = (() => TestJwt.Hs512(TestJwt.Claims("acme", "operator")), "signature"),
        ["RS256"] = (() => TestJwt.Rs256(TestJwt.Claims("acme", "operator")), "signature"),
        ["payload changed after signing"] = (() => Tampered(TestJwt.Hs256(TestJwt.Claims("acme", "reader")), TestJwt.Claims("acme", "operator")), "signature"),
        ["expired"] = (() => TestJwt.Hs256(TestJwt.Claims("acme", "operator", expiresIn: TimeSpan.FromMinutes(-5))), "expired"),
        ["not valid yet"] = (() => TestJwt.Hs256(With(TestJwt.Claims("acme", "operator"), "nbf", TestJwt.Now() + 300)), "not valid yet"),
        ["no expiry"] = (() => TestJwt.Hs256(Without(TestJwt.Claims("acme", "operator"), "exp")), "no expiry"),
        ["role service"] = (() => TestJwt.Hs256(TestJwt.Claims("acme", "service")), "'role'"),
        ["roles unknown"] = (() => TestJwt.Hs256(TestJwt.Claims("acme", new[] { "admin", "root", "Service" })), "'role'"),
        ["no role"] = (() => TestJwt.Hs256(Without(TestJwt.Claims("acme", "operator"), "roles")), "'role'"),
        ["no tenant"] = (() => TestJwt.Hs256(Without(TestJwt.Claims("acme", "operator"), "tenant")), "'tenant'"),
        ["tenant not valid"] = (() => TestJwt.Hs256(TestJwt.Claims("Acme Corp", "operator")), "'tenant'"),
        ["tenant a path"] = (() => TestJwt.Hs256(TestJwt.Claims("../default", "operator")), "'tenant'"),
        ["two tenants"] = (() => TestJwt.Hs256(With(TestJwt.Claims("acme", "operator"), "tenant", new[] { "acme", "default" })), "'tenant'"),
        ["garbage in three parts"] = (() => "not.a.jwt", "not valid"),
    };

    public static TheoryData<string> ForgedTokens() => new(Forged.Keys);

    [Theory(Timeout = TestTimeouts.Default)]
    [MemberData(nameof(ForgedTokens))]
    public async Task A_forged_or_unusable_jwt_is_refused_over_grpc_and_rest_and_reaches_nothing(string what)
    {
        var (make, reason) = Forged[what];
        var token = make();
        var before = env.QueueRequests.Count;
        var ex = await RefusedAsync(() => Gateway.Queue(null, Bearer(token)).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync, StatusCode.Unauthenticated);
        Assert.True(Reason(ex) == "INVALID_CREDENTIAL", what);
        Assert.StartsWith("Credential refused: ", ex.Status.Detail, StringComparison.Ordinal);
        Assert.Contains(reason, ex.Status.Detail, StringComparison.Ordinal);
        Assert.DoesNotContain("IDX", ex.Status.Detail, StringComparison.Ordinal); // IdentityModel's internals stay inside

        using var request = new HttpRequestMessage(HttpMethod.Get, Stats);
        request.Headers.TryAddWithoutValidation("authorization", "Bearer " + token);
        using var response = await Gateway.RestClient.SendAsync(request);
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal((16, "INVALID_CREDENTIAL"), await RestRefusalAsync(response));
        Assert.Equal("Bearer", response.Headers.WwwAuthenticate.Single().Scheme);
        Assert.Empty(env.QueueCallsSince(before));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Lifetimes_within_the_clock_skew_are_accepted()
    {
        // Expired 10 s ago, and valid from 10 s from now: both within the 30 s allowed for clocks that differ.
        await Gateway.Queue(null, Bearer(TestJwt.Hs256(TestJwt.Claims("acme", "reader", expiresIn: TimeSpan.FromSeconds(-10)))))
            .GetQueueStatsAsync(new GetQueueStatsRequest());
        await Gateway.Queue(null, Bearer(TestJwt.Hs256(With(TestJwt.Claims("acme", "reader"), "nbf", TestJwt.Now() + 10))))
            .GetQueueStatsAsync(new GetQueueStatsRequest());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Issuer_and_audience_are_checked_when_configured()
    {
        var gateway = await env.IdentityKeyedGatewayAsync();
        Dictionary<string, object> Claims(string? issuer, object? audience)
        {
            var claims = TestJwt.Claims("acme", "worker");
            if (issuer is not null)
            {
                claims["iss"] = issuer;
            }

            if (audience is not null)
            {
                claims["aud"] = audience;
            }

            return claims;
        }

        string Token(string? issuer, object? audience) => TestJwt.Hs256(Claims(issuer, audience), TestIdentity.SigningKey);

        await gateway.Queue(null, Bearer(Token(GatewayEnvironment.IdentityKeyedIssuer, GatewayEnvironment.IdentityKeyedAudience)))
            .GetQueueStatsAsync(new GetQueueStatsRequest());
        foreach (var (issuer, audience) in new (string?, object?)[]
        {
            ("https://idp.example", GatewayEnvironment.IdentityKeyedAudience),
            (null, GatewayEnvironment.IdentityKeyedAudience),
            (GatewayEnvironment.IdentityKeyedIssuer, "another-audience"),
            (GatewayEnvironment.IdentityKeyedIssuer, new[] { "another-audience", "a-third" }),
            (GatewayEnvironment.IdentityKeyedIssuer, null),
        })
        {
            var ex = await RefusedAsync(
                () => gateway.Queue(null, Bearer(Token(issuer, audience))).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync,
                StatusCode.Unauthenticated);
            Assert.Equal("INVALID_CREDENTIAL", Reason(ex));
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_internal_identity_token_is_no_credential_even_where_it_would_validate_as_a_jwt()
    {
        // This gateway's JWT key, issuer and audience are the identity tokens' own: the token type still tells them apart.
        var gateway = await env.IdentityKeyedGatewayAsync();
        var token = TestIdentity.Tokens.Mint("mallory", "acme", Role.Operator, GatewayEnvironment.IdentityKeyedIssuer);
        var ex = await RefusedAsync(
            () => gateway.Queue(null, Bearer(token)).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync,
            StatusCode.Unauthenticated);
        Assert.Equal("INVALID_CREDENTIAL", Reason(ex));
        Assert.Contains("identity token", ex.Status.Detail, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Every_refusal_carries_error_info_over_grpc_and_rest()
    {
        var cases = new (string What, (string Name, string Value)[] Headers, string Path, StatusCode Code, string Reason)[]
        {
            ("no credential", [], Stats, StatusCode.Unauthenticated, "CREDENTIAL_REQUIRED"),
            ("unknown key", [("x-api-key", "nope")], Stats, StatusCode.Unauthenticated, "INVALID_CREDENTIAL"),
            ("not bearer", [("authorization", "Token abc")], Stats, StatusCode.Unauthenticated, "INVALID_CREDENTIAL"),
            ("bad jwt", [Bearer(TestJwt.None(TestJwt.Claims("acme", "worker")))], Stats, StatusCode.Unauthenticated, "INVALID_CREDENTIAL"),
            ("reader leasing", [Bearer(GatewayEnvironment.Key("default-reader"))], "/api/v1/tasks:lease", StatusCode.PermissionDenied, "ROLE_NOT_ALLOWED"),
        };

        foreach (var (what, headers, path, code, reason) in cases)
        {
            // gRPC: the RPC the REST route stands for.
            var ex = await RefusedAsync(path == Stats
                ? () => Gateway.Queue(null, headers).GetQueueStatsAsync(new GetQueueStatsRequest()).ResponseAsync
                : () => Gateway.Queue(null, headers).LeaseTasksAsync(Lease(Guid.NewGuid().ToString(), "x")).ResponseAsync, code);
            var status = ex.GetRpcStatus();
            Assert.True(status is not null, what);
            var info = status.GetDetail<ErrorInfo>();
            Assert.True(info is { Domain: "lifeline" } && info.Reason == reason, $"{what}: {info}");

            using var request = new HttpRequestMessage(path == Stats ? HttpMethod.Get : HttpMethod.Post, path);
            if (path != Stats)
            {
                request.Content = JsonContent.Create(new { workerId = Guid.NewGuid().ToString(), taskTypes = new[] { "x" } });
            }

            foreach (var (name, value) in headers)
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }

            using var response = await Gateway.RestClient.SendAsync(request);
            Assert.True(response.StatusCode == (code == StatusCode.Unauthenticated ? HttpStatusCode.Unauthorized : HttpStatusCode.Forbidden), what);
            Assert.Equal(((int)code, reason), await RestRefusalAsync(response));
        }
    }

    private static (string Name, string Value) Bearer(string token) => ("authorization", "Bearer " + token);

    private static string Reason(RpcException ex) => ex.GetRpcStatus()?.GetDetail<ErrorInfo>()?.Reason ?? "(no ErrorInfo)";

    /// <returns>The code of a REST refusal's JSON body and the reason of its ErrorInfo (domain <c>lifeline</c>).</returns>
    private static async Task<(int Code, string Reason)> RestRefusalAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var info = Assert.Single(body.RootElement.GetProperty("details").EnumerateArray());
        Assert.Equal("type.googleapis.com/google.rpc.ErrorInfo", info.GetProperty("@type").GetString());
        Assert.Equal("lifeline", info.GetProperty("domain").GetString());
        return (body.RootElement.GetProperty("code").GetInt32(), info.GetProperty("reason").GetString()!);
    }

    /// <summary>The identity the gateway told the queue, verified as the queue verifies it.</summary>
    private static async Task<CallerIdentity> IdentitySeenAsync(IReadOnlyDictionary<string, string> headers)
    {
        Assert.True(headers.TryGetValue(IdentityTokens.HeaderName, out var token), "the call carried no identity");
        var (identity, refusal) = await TestIdentity.Tokens.VerifyAsync(token);
        Assert.True(identity is not null, refusal);
        Assert.Equal("lifeline-gateway", identity.Issuer);
        return identity;
    }

    private static Dictionary<string, object> With(Dictionary<string, object> claims, string name, object value)
    {
        claims[name] = value;
        return claims;
    }

    private static Dictionary<string, object> Without(Dictionary<string, object> claims, string name)
    {
        claims.Remove(name);
        return claims;
    }

    /// <summary>A valid token's header swapped for <c>{"alg":"none"}</c>, its signature kept.</summary>
    private static string NoneWithSignature(string token)
    {
        var parts = token.Split('.');
        return Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." + parts[1] + "." + parts[2];
    }

    /// <summary>A valid token with its payload replaced and its signature kept.</summary>
    private static string Tampered(string token, Dictionary<string, object> claims)
    {
        var parts = token.Split('.');
        return parts[0] + "." + Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(JsonSerializer.Serialize(claims)) + "." + parts[2];
    }
}
