using Lifeline.Gateway.Contracts;
using Lifeline.Gateway.Options;
using Lifeline.Gateway.Routing;
using Lifeline.Gateway.Security;
using Lifeline.ServiceDefaults.Security;
using Microsoft.Extensions.Configuration;

namespace Lifeline.Gateway.Tests;

/// <summary>The descriptor-derived tables, without any service.</summary>
public sealed class ContractTests
{
    [Fact]
    public void Every_contract_rpc_is_in_the_permissions_table()
    {
        var catalog = ContractCatalog.Load();
        Assert.NotEmpty(catalog.Methods);
        var missing = catalog.Methods.Keys.Where(m => !RpcPermissions.Table.ContainsKey(m)).ToList();
        Assert.True(missing.Count == 0, "Add to RpcPermissions.Table: " + string.Join(", ", missing));
        var stale = RpcPermissions.Table.Keys.Where(m => !catalog.Methods.ContainsKey(m)).ToList();
        Assert.True(stale.Count == 0, "Not in the contracts: " + string.Join(", ", stale));
    }

    [Fact]
    public void Every_route_requires_the_policy_of_the_role_the_permissions_table_names()
    {
        var catalog = ContractCatalog.Load();
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(catalog.Services
            .Select(s => s.Upstream).Distinct()
            .Select(upstream => KeyValuePair.Create($"services:{upstream}:grpc:0", (string?)"http://127.0.0.1:1"))).Build();
        var (routes, _) = ProxyRoutes.Build(catalog, UpstreamServices.FromConfiguration(configuration, catalog), new GatewayOptions());

        Assert.Equal(catalog.Methods.Count + catalog.Methods.Values.Sum(m => m.HttpRoutes.Count), routes.Count);
        foreach (var route in routes)
        {
            var rpc = route.Metadata![ProxyRoutes.RpcMetadataKey];
            Assert.Equal(RoleRequirement.PolicyName(RpcPermissions.Required(rpc)), route.AuthorizationPolicy);
        }

        Assert.Contains(routes, r => r.AuthorizationPolicy == "role:platform-admin");
        Assert.Contains(routes, r => r.AuthorizationPolicy == "role:service");
    }

    [Fact]
    public void The_catalog_reads_http_rules_and_streaming_from_the_descriptors()
    {
        var catalog = ContractCatalog.Load();
        var cancel = catalog.Methods["lifeline.queue.v1.QueueService/CancelTask"];
        Assert.Equal("queue", cancel.Upstream);
        var route = Assert.Single(cancel.HttpRoutes);
        Assert.Equal("POST", route.HttpMethod);
        Assert.Equal("/api/v1/tasks/{p0}:cancel", route.ToRoutePattern());
        Assert.Equal("/api/v1/tasks/{task_id}:cancel", route.ToOpenApiPath());
        Assert.Equal(["task_id"], route.PathFields);
        Assert.Equal("*", route.Body);

        Assert.True(catalog.Methods["lifeline.queue.v1.QueueService/WatchTasks"].IsStreaming);
        Assert.True(catalog.Methods["lifeline.registry.v1.RegistryService/HeartbeatStream"].IsStreaming);
        Assert.Empty(catalog.Methods["lifeline.registry.v1.RegistryService/HeartbeatStream"].HttpRoutes);
        Assert.Equal("registry", catalog.Methods["lifeline.registry.v1.RegistryService/Heartbeat"].Upstream);
    }

    [Theory]
    [InlineData("/api/v1/tasks:lease", "/api/v1/tasks:lease", "/api/v1/tasks:lease")]
    [InlineData("/v1/{name=shelves/*/books/*}", "/v1/shelves/{p0}/books/{p1}", "/v1/{name}")]
    [InlineData("/v1/files/{path=**}", "/v1/files/{**p0}", "/v1/files/{path}")]
    [InlineData("/v1/{parent=*}/items:search", "/v1/{p0}/items:search", "/v1/{parent}/items:search")]
    public void Http_templates_become_route_patterns_and_openapi_paths(string template, string pattern, string openApi)
    {
        var route = HttpRoute.Parse("get", template, null);
        Assert.Equal(pattern, route.ToRoutePattern());
        Assert.Equal(openApi, route.ToOpenApiPath());
    }

    [Fact]
    public void Api_keys_are_configured_as_sha256_hex()
    {
        Assert.Equal("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", ApiKeyAuthenticationHandler.Hash("hello"));
    }
}
