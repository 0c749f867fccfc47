using Lifeline.ServiceDefaults.Security;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf.Reflection;
using Lifeline.Gateway.Contracts;
using Lifeline.Gateway.Routing;

namespace Lifeline.Gateway.OpenApi;

/// <summary>
/// The OpenAPI 3.0 document of the REST surface (<c>GET /openapi.json</c>, no credential), generated from the
/// same contract descriptors the routes come from: a path per <c>google.api.http</c> binding, path and query
/// parameters, request and response schemas from the messages with proto3 JSON names (64-bit integers as
/// strings, enums as their names, well-known types as their JSON forms), and the role each operation needs.
/// </summary>
internal sealed class OpenApiDocument
{
    private readonly ContractCatalog _catalog;
    private readonly UpstreamServices _upstreams;
    private readonly Lazy<byte[]> _json;

    public OpenApiDocument(ContractCatalog catalog, UpstreamServices upstreams)
    {
        _catalog = catalog;
        _upstreams = upstreams;
        _json = new Lazy<byte[]>(() => JsonSerializer.SerializeToUtf8Bytes(Build(), new JsonSerializerOptions { WriteIndented = true }));
    }

    public ReadOnlyMemory<byte> Json => _json.Value;

    public JsonObject Build()
    {
        var schemas = new SchemaRegistry();
        var paths = new SortedDictionary<string, JsonObject>(StringComparer.Ordinal);
        foreach (var service in _catalog.Services.Where(s => _upstreams.Addresses.ContainsKey(s.Upstream)))
        {
            foreach (var method in service.Methods)
            {
                for (var i = 0; i < method.HttpRoutes.Count; i++)
                {
                    var route = method.HttpRoutes[i];
                    var path = route.ToOpenApiPath();
                    if (!paths.TryGetValue(path, out var item))
                    {
                        paths[path] = item = [];
                    }

                    item[route.HttpMethod.ToLowerInvariant()] = Operation(service, method, route, i, schemas);
                }
            }
        }

        var pathsObject = new JsonObject();
        foreach (var (path, item) in paths)
        {
            pathsObject[path] = item;
        }

        return new JsonObject
        {
            ["openapi"] = "3.0.3",
            ["info"] = new JsonObject
            {
                ["title"] = "Lifeline REST API",
                ["version"] = "v1",
                ["description"] =
                    "REST/JSON transcoding of Lifeline's gRPC services through the gateway. Every operation needs a credential " +
                    "('authorization: Bearer <API key or JWT>' or 'x-api-key'); the tenant is the credential's. " +
                    "Errors are google.rpc.Status as JSON.",
            },
            ["paths"] = pathsObject,
            ["components"] = new JsonObject
            {
                ["schemas"] = schemas.ToJson(),
                ["securitySchemes"] = new JsonObject
                {
                    ["bearer"] = new JsonObject { ["type"] = "http", ["scheme"] = "bearer", ["description"] = "An API key or an HS256 JWT." },
                    ["apiKey"] = new JsonObject { ["type"] = "apiKey", ["in"] = "header", ["name"] = Lifeline.Gateway.Security.ApiKeyAuthenticationHandler.HeaderName },
                },
            },
            ["security"] = new JsonArray(new JsonObject { ["bearer"] = new JsonArray() }, new JsonObject { ["apiKey"] = new JsonArray() }),
        };
    }

    private static JsonObject Operation(RpcService service, RpcMethod method, HttpRoute route, int index, SchemaRegistry schemas)
    {
        var input = method.Descriptor.InputType;
        var role = RpcPermissions.Required(method.FullName);
        var parameters = new JsonArray();
        var pathFields = route.PathFields.ToHashSet(StringComparer.Ordinal);
        foreach (var fieldPath in pathFields)
        {
            var field = FindField(input, fieldPath);
            parameters.Add(new JsonObject
            {
                ["name"] = fieldPath,
                ["in"] = "path",
                ["required"] = true,
                ["schema"] = field is null ? new JsonObject { ["type"] = "string" } : schemas.FieldSchema(field),
            });
        }

        if (route.Body is null)
        {
            foreach (var field in input.Fields.InDeclarationOrder().Where(f => !pathFields.Contains(f.Name) && IsQueryable(f)))
            {
                parameters.Add(new JsonObject
                {
                    ["name"] = field.JsonName,
                    ["in"] = "query",
                    ["required"] = false,
                    ["schema"] = schemas.FieldSchema(field),
                });
            }
        }

        var streaming = method.Descriptor.IsServerStreaming;
        var operation = new JsonObject
        {
            ["operationId"] = index == 0 ? $"{service.Descriptor.Name}_{method.Descriptor.Name}" : $"{service.Descriptor.Name}_{method.Descriptor.Name}_{index}",
            ["tags"] = new JsonArray(service.Descriptor.Name),
            ["summary"] = $"{method.Descriptor.Name} ({method.FullName})",
            ["description"] = $"Needs role '{role.Name()}'." + (streaming ? " Streams: the response is a sequence of JSON objects, written as they happen." : ""),
            ["x-lifeline-rpc"] = method.FullName,
            ["x-lifeline-role"] = role.Name(),
            ["parameters"] = parameters,
            ["responses"] = new JsonObject
            {
                ["200"] = new JsonObject
                {
                    ["description"] = streaming ? "A stream of messages" : "OK",
                    ["content"] = new JsonObject { ["application/json"] = new JsonObject { ["schema"] = schemas.Reference(method.Descriptor.OutputType) } },
                },
                ["default"] = new JsonObject
                {
                    ["description"] = "An error (401 no credential, 403 role not allowed, 404 not found or another tenant's, 429 rate limited, …)",
                    ["content"] = new JsonObject { ["application/json"] = new JsonObject { ["schema"] = schemas.StatusReference() } },
                },
            },
        };

        if (route.Body is "*")
        {
            operation["requestBody"] = Body(schemas.Reference(input));
        }
        else if (route.Body is { } bodyField && input.FindFieldByName(bodyField) is { } field)
        {
            operation["requestBody"] = Body(schemas.FieldSchema(field));
        }

        return operation;
    }

    private static JsonObject Body(JsonNode schema) => new()
    {
        ["required"] = true,
        ["content"] = new JsonObject { ["application/json"] = new JsonObject { ["schema"] = schema } },
    };

    private static FieldDescriptor? FindField(MessageDescriptor message, string path)
    {
        FieldDescriptor? field = null;
        foreach (var name in path.Split('.'))
        {
            field = message.FindFieldByName(name);
            if (field is null)
            {
                return null;
            }

            if (field.FieldType == FieldType.Message)
            {
                message = field.MessageType;
            }
        }

        return field;
    }

    /// <summary>Scalars, enums, repeated scalars and well-known types written as JSON strings can go in a query string.</summary>
    private static bool IsQueryable(FieldDescriptor field) =>
        !field.IsMap && (field.FieldType != FieldType.Message || SchemaRegistry.IsStringLikeWellKnown(field.MessageType.FullName));
}
