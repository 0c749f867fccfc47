using System.Text.Json.Nodes;
using Google.Protobuf.Reflection;

namespace Lifeline.Gateway.OpenApi;

/// <summary>JSON schemas of protobuf messages and enums (proto3 JSON mapping), collected as they are referenced.</summary>
internal sealed class SchemaRegistry
{
    private const string StatusSchema = "google.rpc.Status";

    private readonly SortedDictionary<string, JsonObject> _schemas = new(StringComparer.Ordinal);

    public static bool IsStringLikeWellKnown(string fullName) => fullName is
        "google.protobuf.Timestamp" or "google.protobuf.Duration" or "google.protobuf.FieldMask" or
        "google.protobuf.StringValue" or "google.protobuf.BytesValue" or "google.protobuf.Int64Value" or "google.protobuf.UInt64Value" or
        "google.protobuf.Int32Value" or "google.protobuf.UInt32Value" or "google.protobuf.BoolValue" or
        "google.protobuf.DoubleValue" or "google.protobuf.FloatValue";

    public JsonObject Reference(MessageDescriptor message) =>
        WellKnown(message.FullName) ?? RefTo(message);

    public JsonObject StatusReference()
    {
        if (!_schemas.ContainsKey(StatusSchema))
        {
            _schemas[StatusSchema] = new JsonObject
            {
                ["type"] = "object",
                ["properties"] = new JsonObject
                {
                    ["code"] = new JsonObject { ["type"] = "integer", ["format"] = "int32", ["description"] = "A google.rpc.Code" },
                    ["message"] = new JsonObject { ["type"] = "string" },
                    ["details"] = new JsonObject
                    {
                        ["type"] = "array",
                        ["items"] = new JsonObject { ["type"] = "object", ["properties"] = new JsonObject { ["@type"] = new JsonObject { ["type"] = "string" } } },
                    },
                },
            };
        }

        return new JsonObject { ["$ref"] = "#/components/schemas/" + StatusSchema };
    }

    public JsonObject FieldSchema(FieldDescriptor field)
    {
        if (field.IsMap)
        {
            var value = field.MessageType.FindFieldByNumber(2);
            return new JsonObject { ["type"] = "object", ["additionalProperties"] = SingleSchema(value) };
        }

        return field.IsRepeated
            ? new JsonObject { ["type"] = "array", ["items"] = SingleSchema(field) }
            : SingleSchema(field);
    }

    public JsonObject ToJson()
    {
        var result = new JsonObject();
        foreach (var (name, schema) in _schemas)
        {
            result[name] = schema;
        }

        return result;
    }

    private JsonObject SingleSchema(FieldDescriptor field) => field.FieldType switch
    {
        FieldType.Double => new JsonObject { ["type"] = "number", ["format"] = "double" },
        FieldType.Float => new JsonObject { ["type"] = "number", ["format"] = "float" },
        FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => new JsonObject { ["type"] = "integer", ["format"] = "int32" },
        FieldType.UInt32 or FieldType.Fixed32 => new JsonObject { ["type"] = "integer", ["format"] = "int64", ["minimum"] = 0 },
        FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => new JsonObject { ["type"] = "string", ["format"] = "int64" },
        FieldType.UInt64 or FieldType.Fixed64 => new JsonObject { ["type"] = "string", ["format"] = "uint64" },
        FieldType.Bool => new JsonObject { ["type"] = "boolean" },
        FieldType.String => new JsonObject { ["type"] = "string" },
        FieldType.Bytes => new JsonObject { ["type"] = "string", ["format"] = "byte" },
        FieldType.Enum => RefTo(field.EnumType),
        _ => Reference(field.MessageType),
    };

    private JsonObject RefTo(MessageDescriptor message)
    {
        if (!_schemas.ContainsKey(message.FullName))
        {
            var properties = new JsonObject();
            _schemas[message.FullName] = new JsonObject { ["type"] = "object", ["properties"] = properties }; // before the fields: recursion
            foreach (var field in message.Fields.InDeclarationOrder())
            {
                properties[field.JsonName] = FieldSchema(field);
            }
        }

        return new JsonObject { ["$ref"] = "#/components/schemas/" + message.FullName };
    }

    private JsonObject RefTo(EnumDescriptor enumeration)
    {
        if (!_schemas.ContainsKey(enumeration.FullName))
        {
            var values = new JsonArray();
            foreach (var value in enumeration.Values)
            {
                values.Add(value.Name);
            }

            _schemas[enumeration.FullName] = new JsonObject { ["type"] = "string", ["enum"] = values };
        }

        return new JsonObject { ["$ref"] = "#/components/schemas/" + enumeration.FullName };
    }

    private static JsonObject? WellKnown(string fullName) => fullName switch
    {
        "google.protobuf.Timestamp" => new JsonObject { ["type"] = "string", ["format"] = "date-time" },
        "google.protobuf.Duration" => new JsonObject { ["type"] = "string", ["example"] = "30s", ["description"] = "Seconds with an 's' suffix, e.g. 1.5s" },
        "google.protobuf.FieldMask" => new JsonObject { ["type"] = "string" },
        "google.protobuf.Struct" => new JsonObject { ["type"] = "object", ["additionalProperties"] = true },
        "google.protobuf.Value" => new JsonObject(),
        "google.protobuf.ListValue" => new JsonObject { ["type"] = "array", ["items"] = new JsonObject() },
        "google.protobuf.Empty" => new JsonObject { ["type"] = "object" },
        "google.protobuf.Any" => new JsonObject
        {
            ["type"] = "object",
            ["properties"] = new JsonObject { ["@type"] = new JsonObject { ["type"] = "string" } },
            ["additionalProperties"] = true,
        },
        "google.protobuf.StringValue" => new JsonObject { ["type"] = "string", ["nullable"] = true },
        "google.protobuf.BytesValue" => new JsonObject { ["type"] = "string", ["format"] = "byte", ["nullable"] = true },
        "google.protobuf.Int64Value" or "google.protobuf.UInt64Value" => new JsonObject { ["type"] = "string", ["format"] = "int64", ["nullable"] = true },
        "google.protobuf.Int32Value" or "google.protobuf.UInt32Value" => new JsonObject { ["type"] = "integer", ["nullable"] = true },
        "google.protobuf.BoolValue" => new JsonObject { ["type"] = "boolean", ["nullable"] = true },
        "google.protobuf.DoubleValue" or "google.protobuf.FloatValue" => new JsonObject { ["type"] = "number", ["nullable"] = true },
        _ => null,
    };
}
