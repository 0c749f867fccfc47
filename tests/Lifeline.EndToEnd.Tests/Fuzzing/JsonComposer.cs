using System.Text;
using System.Text.Json.Nodes;
using Google.Protobuf.Reflection;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// The REST (proto3 JSON) twin of <see cref="ProtobufComposer"/>: a request body with every field at its baseline value
/// except the target, whose JSON the case gives. JSON no <see cref="JsonNode"/> can hold (a lone surrogate escape,
/// <c>1e999999</c>, invalid UTF-8) goes in as a placeholder that <see cref="JsonText.Serialize"/> swaps for the raw bytes.
/// </summary>
internal static class JsonComposer
{
    /// <summary>The target field's JSON value (for a repeated field: the whole array); null leaves the field out.</summary>
    public delegate JsonNode? LeafValue(FieldDescriptor field);

    public static JsonObject Compose(MessageDescriptor message, Baseline baseline, FieldPath? target = null, LeafValue? leaf = null) =>
        Message(message, baseline, target, 0, leaf, [message.FullName]);

    /// <summary>One baseline value of a field: an array of one element when repeated, an object of one entry for a map.</summary>
    public static JsonNode? BaselineValue(FieldDescriptor field, Baseline baseline, IReadOnlyCollection<string> onTheWay)
    {
        if (field.IsMap)
        {
            var key = field.MessageType.FindFieldByNumber(1);
            var value = field.MessageType.FindFieldByNumber(2);
            return new JsonObject { [MapKey(key, baseline)] = Single(value, baseline, onTheWay) ?? "" };
        }

        var single = Single(field, baseline, onTheWay);
        return field.IsRepeated ? single is null ? null : new JsonArray(single) : single;
    }

    /// <summary>One baseline value (never an array).</summary>
    public static JsonNode? Single(FieldDescriptor field, Baseline baseline, IReadOnlyCollection<string> onTheWay) => FieldPath.KindOf(field) switch
    {
        FieldKind.String => baseline.String(field) is { Length: > 0 } text ? JsonValue.Create(text) : null,
        FieldKind.Bytes => JsonValue.Create(Convert.ToBase64String(Encoding.UTF8.GetBytes(baseline.Marker))),
        FieldKind.Int32 or FieldKind.UInt32 => JsonValue.Create(1),
        FieldKind.Int64 or FieldKind.UInt64 => JsonValue.Create("1"),
        FieldKind.Floating => JsonValue.Create(0.5),
        FieldKind.Bool => JsonValue.Create(Baseline.Bool(field)),
        FieldKind.Enum => JsonValue.Create(Baseline.EnumValue(field).Name),
        FieldKind.Timestamp => JsonValue.Create(baseline.TimestampJson),
        FieldKind.Duration => JsonValue.Create($"{Baseline.DurationSeconds}s"),
        FieldKind.Message when onTheWay.Count < Baseline.MaxDepth && !onTheWay.Contains(field.MessageType.FullName) =>
            Message(field.MessageType, baseline, null, 0, null, [.. onTheWay, field.MessageType.FullName]),
        _ => null,
    };

    public static string MapKey(FieldDescriptor key, Baseline baseline) => key.FieldType switch
    {
        FieldType.String => baseline.Marker,
        FieldType.Bool => "true",
        _ => "1",
    };

    /// <summary>Removes a field given by its proto path (<c>task.id</c>) from a body, if there.</summary>
    public static void Remove(JsonObject body, MessageDescriptor message, string protoPath)
    {
        var names = protoPath.Split('.');
        JsonObject? current = body;
        var descriptor = message;
        for (var i = 0; i < names.Length && current is not null && descriptor is not null; i++)
        {
            var field = descriptor.FindFieldByName(names[i]);
            if (field is null)
            {
                return;
            }

            if (i == names.Length - 1)
            {
                current.Remove(field.JsonName);
                return;
            }

            current = current[field.JsonName] as JsonObject;
            descriptor = field.FieldType == FieldType.Message ? field.MessageType : null;
        }
    }

    private static JsonObject Message(
        MessageDescriptor message, Baseline baseline, FieldPath? target, int index, LeafValue? leaf, IReadOnlyCollection<string> onTheWay)
    {
        var json = new JsonObject();
        var targetField = target is not null && index < target.Fields.Count ? target.Fields[index] : null;
        var filledOneofs = new HashSet<string>(StringComparer.Ordinal);
        foreach (var field in message.Fields.InFieldNumberOrder())
        {
            var oneof = field.RealContainingOneof;
            if (targetField is not null && field.FieldNumber == targetField.FieldNumber)
            {
                JsonNode? value;
                if (index == target!.Fields.Count - 1)
                {
                    value = leaf!(field);
                }
                else
                {
                    var inner = Message(field.MessageType, baseline, target, index + 1, leaf, [.. onTheWay, field.MessageType.FullName]);
                    value = field.IsRepeated ? new JsonArray(inner) : inner;
                }

                if (value is not null)
                {
                    json[field.JsonName] = value;
                }

                continue;
            }

            if (oneof is not null && (targetField?.RealContainingOneof?.Name == oneof.Name || !filledOneofs.Add(oneof.Name)))
            {
                continue;
            }

            if (BaselineValue(field, baseline, onTheWay) is { } baselineValue)
            {
                json[field.JsonName] = baselineValue;
            }
        }

        return json;
    }
}

/// <summary>JSON text with raw parts: placeholders in a node tree replaced by bytes no JSON writer would produce.</summary>
internal sealed class JsonText
{
    private readonly List<(byte[] Placeholder, byte[] Raw)> _raw = [];

    /// <summary>A node that serializes as exactly <paramref name="raw"/>.</summary>
    public JsonNode Raw(string raw) => Raw(Encoding.UTF8.GetBytes(raw));

    public JsonNode Raw(byte[] raw)
    {
        var key = $"__fzraw{_raw.Count}__";
        _raw.Add((Encoding.UTF8.GetBytes($"\"{key}\""), raw));
        return JsonValue.Create(key);
    }

    public byte[] Serialize(JsonNode? node)
    {
        var bytes = Encoding.UTF8.GetBytes(node?.ToJsonString() ?? "null");
        foreach (var (placeholder, raw) in _raw)
        {
            var at = bytes.AsSpan().IndexOf(placeholder);
            if (at >= 0)
            {
                bytes = [.. bytes.AsSpan(0, at), .. raw, .. bytes.AsSpan(at + placeholder.Length)];
            }
        }

        return bytes;
    }
}
