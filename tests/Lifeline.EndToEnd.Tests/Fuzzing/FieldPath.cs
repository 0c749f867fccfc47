using Google.Protobuf.Reflection;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>What a field holds, as far as the attacks on it go.</summary>
internal enum FieldKind
{
    String,
    Bytes,
    Int32,
    Int64,
    UInt32,
    UInt64,
    Floating,
    Bool,
    Enum,
    Timestamp,
    Duration,
    Message,
    Map,
}

/// <summary>A field reached from a request message: the fields from the request down to it (<c>task.retry_policy.jitter</c>).</summary>
internal sealed class FieldPath(IReadOnlyList<FieldDescriptor> fields)
{
    public IReadOnlyList<FieldDescriptor> Fields { get; } = fields;

    public FieldDescriptor Leaf => Fields[^1];

    public string Name => string.Join('.', Fields.Select(f => f.Name));

    public FieldKind Kind => KindOf(Leaf);

    /// <summary>A repeated field that is not a map.</summary>
    public bool IsList => Leaf.IsRepeated && !Leaf.IsMap;

    public FieldPath Child(FieldDescriptor field) => new([.. Fields, field]);

    /// <summary>Every field of <paramref name="message"/> and, down to <see cref="Baseline.MaxDepth"/>, of its messages (not into map entries, Timestamps or Durations, nor into a type already on the way).</summary>
    public static IEnumerable<FieldPath> Walk(MessageDescriptor message) => Walk(message, null, [message.FullName]);

    private static IEnumerable<FieldPath> Walk(MessageDescriptor message, FieldPath? parent, IReadOnlyCollection<string> onTheWay)
    {
        foreach (var field in message.Fields.InFieldNumberOrder())
        {
            var path = parent?.Child(field) ?? new FieldPath([field]);
            yield return path;
            if (KindOf(field) == FieldKind.Message && path.Fields.Count < Baseline.MaxDepth && !onTheWay.Contains(field.MessageType.FullName))
            {
                foreach (var inner in Walk(field.MessageType, path, [.. onTheWay, field.MessageType.FullName]))
                {
                    yield return inner;
                }
            }
        }
    }

    public static FieldKind KindOf(FieldDescriptor field) => field.FieldType switch
    {
        _ when field.IsMap => FieldKind.Map,
        FieldType.String => FieldKind.String,
        FieldType.Bytes => FieldKind.Bytes,
        FieldType.Int32 or FieldType.SInt32 or FieldType.SFixed32 => FieldKind.Int32,
        FieldType.Int64 or FieldType.SInt64 or FieldType.SFixed64 => FieldKind.Int64,
        FieldType.UInt32 or FieldType.Fixed32 => FieldKind.UInt32,
        FieldType.UInt64 or FieldType.Fixed64 => FieldKind.UInt64,
        FieldType.Float or FieldType.Double => FieldKind.Floating,
        FieldType.Bool => FieldKind.Bool,
        FieldType.Enum => FieldKind.Enum,
        FieldType.Message when field.MessageType.FullName == "google.protobuf.Timestamp" => FieldKind.Timestamp,
        FieldType.Message when field.MessageType.FullName == "google.protobuf.Duration" => FieldKind.Duration,
        _ => FieldKind.Message,
    };

    public override string ToString() => Name;
}
