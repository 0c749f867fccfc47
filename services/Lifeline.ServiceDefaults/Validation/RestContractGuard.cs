using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Grpc.JsonTranscoding;
using Microsoft.AspNetCore.Http;

namespace Lifeline.ServiceDefaults.Validation;

/// <summary>
/// Checks a REST (JSON transcoding) request against its contract before the transcoder reads it, because the
/// transcoder silently ignores what it does not know: a misspelled <c>dryRun</c> would run for real, and
/// <c>{"noSuchField":1}</c> on a redrive would redrive everything. Refused with 400 and a BadRequest naming each
/// problem (at most <see cref="ValidationException.MaxListed"/>): the body is not JSON (with its position),
/// nested deeper than <see cref="MaxDepth"/>, larger than <see cref="MaxBodyBytes"/>, a property or query
/// parameter that is not a field, or a value of the wrong JSON type for its field.
/// </summary>
public static class RestContractGuard
{
    /// <summary>Largest REST body read (bytes); the gRPC limit is the same.</summary>
    public const int MaxBodyBytes = Extensions.MaxMessageBytes;

    /// <summary>Deepest JSON nesting accepted in a body.</summary>
    public const int MaxDepth = 64;

    private static readonly JsonFormatter StatusFormatter = new(JsonFormatter.Settings.Default.WithTypeRegistry(
        TypeRegistry.FromMessages(Google.Rpc.BadRequest.Descriptor, Google.Rpc.ErrorInfo.Descriptor)));

    public static WebApplication UseRestContractGuard(this WebApplication app)
    {
        app.Use(async (context, next) =>
        {
            var metadata = context.GetEndpoint()?.Metadata.GetMetadata<GrpcJsonTranscodingMetadata>();
            if (metadata is null)
            {
                await next(context);
                return;
            }
            var violations = new Violations();
            CheckQuery(context.Request.Query, metadata, violations);
            await CheckBodyAsync(context.Request, metadata, violations, context.RequestAborted);
            if (violations.Any)
            {
                try
                {
                    violations.ThrowIfAny();
                }
                catch (ValidationException ex)
                {
                    context.Response.StatusCode = StatusCodes.Status400BadRequest;
                    context.Response.ContentType = "application/json";
                    await context.Response.WriteAsync(StatusFormatter.Format(ErrorMappingInterceptor.ToStatus(ex)), context.RequestAborted);
                }
                return;
            }
            if (metadata.MethodDescriptor.IsServerStreaming)
            {
                await next(context);
                return;
            }
            await WithDetailedRefusalsAsync(context, next);
        });
        return app;
    }

    /// <summary>
    /// The transcoder refuses what it cannot convert (an unknown enum name, a malformed Duration string, a null
    /// body) with 400 and a message but no details. Such an answer gets the same shape as every other refusal:
    /// a BadRequest carrying the transcoder's message, and ErrorInfo. Other answers pass through unchanged.
    /// </summary>
    private static async Task WithDetailedRefusalsAsync(HttpContext context, RequestDelegate next)
    {
        var original = context.Response.Body;
        using var buffer = new MemoryStream();
        context.Response.Body = buffer;
        try
        {
            await next(context);
        }
        finally
        {
            context.Response.Body = original;
        }
        buffer.Position = 0;
        if (context.Response.StatusCode == StatusCodes.Status400BadRequest && buffer.Length < 64 * 1024
            && TranscoderRefusal(buffer.ToArray()) is { } message)
        {
            var status = ErrorMappingInterceptor.ToStatus(ValidationException.For("(request)", message));
            var json = System.Text.Encoding.UTF8.GetBytes(StatusFormatter.Format(status));
            context.Response.ContentLength = json.Length;
            await original.WriteAsync(json, context.RequestAborted);
            return;
        }
        await buffer.CopyToAsync(original, context.RequestAborted);
    }

    /// <summary>The message of a google.rpc.Status JSON body with no details, or null.</summary>
    private static string? TranscoderRefusal(byte[] body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            return root.ValueKind == JsonValueKind.Object
                   && root.TryGetProperty("message", out var message) && message.ValueKind == JsonValueKind.String
                   && (!root.TryGetProperty("details", out var details) || details.ValueKind != JsonValueKind.Array || details.GetArrayLength() == 0)
                ? message.GetString()
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static void CheckQuery(IQueryCollection query, GrpcJsonTranscodingMetadata metadata, Violations violations)
    {
        foreach (var key in query.Keys)
        {
            var message = metadata.MethodDescriptor.InputType;
            FieldDescriptor? field = null;
            foreach (var part in key.Split('.'))
            {
                field = message is null ? null : Find(message, part);
                if (field is null)
                {
                    break;
                }
                message = field.FieldType == FieldType.Message ? field.MessageType : null;
            }
            if (field is null)
            {
                violations.Add(Violations.Truncate(key, 80), $"is not a field of {metadata.MethodDescriptor.InputType.Name} (query parameter)");
            }
        }
    }

    private static async Task CheckBodyAsync(HttpRequest request, GrpcJsonTranscodingMetadata metadata, Violations violations, CancellationToken ct)
    {
        var bodyRule = metadata.HttpRule.Body;
        if (string.IsNullOrEmpty(bodyRule) || request.ContentLength == 0)
        {
            return;
        }
        if (request.ContentLength > MaxBodyBytes)
        {
            violations.Add("(body)", $"is {request.ContentLength} bytes; at most {MaxBodyBytes} are accepted");
            return;
        }
        request.EnableBuffering(bufferThreshold: 64 * 1024, bufferLimit: MaxBodyBytes);
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(request.Body, new JsonDocumentOptions { MaxDepth = MaxDepth }, ct);
        }
        catch (JsonException ex)
        {
            violations.Add("(body)", $"is not valid JSON: {Violations.Truncate(ex.Message, 200)}");
            return;
        }
        catch (IOException ex) when (ex.Message.Contains("limit", StringComparison.OrdinalIgnoreCase))
        {
            violations.Add("(body)", $"is larger than {MaxBodyBytes} bytes");
            return;
        }
        finally
        {
            request.Body.Position = 0;
        }
        using (document)
        {
            var input = metadata.MethodDescriptor.InputType;
            try
            {
                if (bodyRule == "*")
                {
                    CheckMessage(document.RootElement, input, "", violations);
                }
                else if (Find(input, bodyRule) is { } field)
                {
                    CheckValue(document.RootElement, field, field.Name, violations, repeatedItem: false);
                }
            }
            catch (InvalidOperationException)
            {
                // A property name that is not valid UTF-8 cannot be read as text.
                violations.Add("(body)", "is not valid UTF-8");
            }
        }
    }

    private static FieldDescriptor? Find(MessageDescriptor message, string name) =>
        message.Fields.InDeclarationOrder().FirstOrDefault(f => f.JsonName == name || f.Name == name);

    private static void CheckMessage(JsonElement element, MessageDescriptor message, string path, Violations violations)
    {
        if (element.ValueKind == JsonValueKind.Null)
        {
            return;
        }
        if (IsFreeForm(message))
        {
            return; // Struct, Value, Any, Timestamp, Duration, wrappers, FieldMask: their own JSON forms
        }
        if (element.ValueKind != JsonValueKind.Object)
        {
            violations.Add(Name(path), $"must be a JSON object ({message.Name}); got {Describe(element)}");
            return;
        }
        foreach (var property in element.EnumerateObject())
        {
            var propertyPath = path.Length == 0 ? property.Name : $"{path}.{property.Name}";
            if (Find(message, property.Name) is not { } field)
            {
                violations.Add(Violations.Truncate(propertyPath, 120), $"is not a field of {message.Name}");
                continue;
            }
            CheckValue(property.Value, field, propertyPath, violations, repeatedItem: false);
        }
    }

    private static void CheckValue(JsonElement value, FieldDescriptor field, string path, Violations violations, bool repeatedItem)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return;
        }
        if (field.IsMap && !repeatedItem)
        {
            if (value.ValueKind != JsonValueKind.Object)
            {
                violations.Add(path, $"must be a JSON object (a map); got {Describe(value)}");
                return;
            }
            var valueField = field.MessageType.FindFieldByNumber(2);
            var i = 0;
            foreach (var entry in value.EnumerateObject())
            {
                CheckValue(entry.Value, valueField, ContractGuard.EntryPath(path, entry.Name, i++), violations, repeatedItem: true);
            }
            return;
        }
        if (field.IsRepeated && !repeatedItem)
        {
            if (value.ValueKind != JsonValueKind.Array)
            {
                violations.Add(path, $"must be a JSON array; got {Describe(value)}");
                return;
            }
            var i = 0;
            foreach (var item in value.EnumerateArray())
            {
                CheckValue(item, field, $"{path}[{i++}]", violations, repeatedItem: true);
            }
            return;
        }
        var ok = field.FieldType switch
        {
            FieldType.Message or FieldType.Group => true,
            FieldType.String or FieldType.Bytes => value.ValueKind == JsonValueKind.String,
            FieldType.Bool => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
            FieldType.Enum => value.ValueKind is JsonValueKind.String or JsonValueKind.Number,
            // Numbers may be JSON numbers or strings (the proto3 mapping writes 64-bit integers as strings).
            _ => value.ValueKind is JsonValueKind.Number or JsonValueKind.String,
        };
        if (!ok)
        {
            violations.Add(path, $"must be {Expected(field)}; got {Describe(value)}");
            return;
        }
        if (field.FieldType is FieldType.Message or FieldType.Group)
        {
            CheckMessage(value, field.MessageType, path, violations);
        }
    }

    private static bool IsFreeForm(MessageDescriptor message) => message.File.Package == "google.protobuf";

    private static string Expected(FieldDescriptor field) => field.FieldType switch
    {
        FieldType.String => "a JSON string",
        FieldType.Bytes => "a base64 JSON string",
        FieldType.Bool => "true or false",
        FieldType.Enum => $"a {field.EnumType.Name} name (string) or number",
        _ => "a number (or a string holding one)",
    };

    private static string Describe(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        _ => element.ValueKind.ToString().ToLowerInvariant(),
    };

    private static string Name(string path) => path.Length == 0 ? "(body)" : path;
}
