using Google.Protobuf.Reflection;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// Encodes a request with every field at its <see cref="Baseline"/> value except one: at the target path a writer puts
/// whatever the case wants on the wire (tag included), or nothing. Ancestors of the target are written in full around it
/// (one element for a repeated message), and a oneof holds the target's member instead of its first.
/// </summary>
internal static class ProtobufComposer
{
    /// <summary>Writes the target field's occurrences: tag(s) and value(s), in any (mal)form.</summary>
    public delegate void LeafWriter(WireWriter writer, FieldDescriptor field);

    public static byte[] Compose(MessageDescriptor message, Baseline baseline, FieldPath? target = null, LeafWriter? leaf = null)
    {
        var writer = new WireWriter();
        WriteMessage(writer, message, baseline, target, 0, leaf, [message.FullName]);
        return writer.ToArray();
    }

    /// <summary>The baseline encoding of one message (no target).</summary>
    public static byte[] BaselineMessage(MessageDescriptor message, Baseline baseline, IReadOnlyCollection<string>? onTheWay = null)
    {
        var writer = new WireWriter();
        WriteMessage(writer, message, baseline, null, 0, null, onTheWay ?? [message.FullName]);
        return writer.ToArray();
    }

    /// <summary>
    /// The messages of a case on a bidirectional stream whose request is a oneof of kinds, opened by its first kind
    /// (Dispatch: <c>open</c>): a message aimed at a field of another kind follows a baseline opening, as a worker would
    /// send it, so the service judges that message rather than the order. Other RPCs: the message alone.
    /// </summary>
    public static IReadOnlyList<byte[]> OnTheStream(MethodDescriptor rpc, FieldPath? target, byte[] message, Baseline baseline)
    {
        var kinds = StreamKinds(rpc);
        if (kinds is null || target is null || target.Fields[0].RealContainingOneof != kinds || target.Fields[0] == kinds.Fields[0])
        {
            return [message];
        }
        return [BaselineMessage(rpc.InputType, baseline.ForOpening()), message];
    }

    /// <summary>
    /// A whole session on a bidirectional stream whose request is a oneof of kinds: the opening (from
    /// <paramref name="opening"/>), then one baseline message of every other kind (from <paramref name="baseline"/>).
    /// Other RPCs: the baseline message alone.
    /// </summary>
    public static IReadOnlyList<byte[]> Session(MethodDescriptor rpc, Baseline opening, Baseline baseline)
    {
        if (StreamKinds(rpc) is not { } kinds)
        {
            return [BaselineMessage(rpc.InputType, baseline)];
        }
        var request = rpc.InputType;
        var messages = new List<byte[]> { BaselineMessage(request, opening) };
        foreach (var kind in kinds.Fields.Skip(1))
        {
            messages.Add(Compose(request, baseline, new FieldPath([kind]), (w, f) => WriteBaselineField(w, f, baseline, [request.FullName])));
        }
        return messages;
    }

    /// <summary>The oneof of kinds of a bidirectional stream's request (its first oneof), or null.</summary>
    private static OneofDescriptor? StreamKinds(MethodDescriptor rpc) =>
        rpc is { IsClientStreaming: true, IsServerStreaming: true }
            ? rpc.InputType.Fields.InFieldNumberOrder().Select(f => f.RealContainingOneof).FirstOrDefault(o => o is not null)
            : null;

    /// <summary>One baseline occurrence of <paramref name="field"/> (tag and value; one element or entry when repeated).</summary>
    public static void WriteBaselineField(WireWriter writer, FieldDescriptor field, Baseline baseline, IReadOnlyCollection<string> onTheWay)
    {
        switch (FieldPath.KindOf(field))
        {
            case FieldKind.Map:
                writer.Field(field.FieldNumber, BaselineMessage(field.MessageType, baseline, onTheWay));
                break;
            case FieldKind.String:
                var text = baseline.String(field);
                if (text.Length > 0)
                {
                    writer.Scalar(field, text);
                }

                break;
            case FieldKind.Bytes:
                writer.Scalar(field, System.Text.Encoding.UTF8.GetBytes(baseline.Marker));
                break;
            case FieldKind.Int32 or FieldKind.Int64:
                writer.Scalar(field, 1L);
                break;
            case FieldKind.UInt32 or FieldKind.UInt64:
                writer.Scalar(field, 1UL);
                break;
            case FieldKind.Floating:
                writer.Scalar(field, 0.5);
                break;
            case FieldKind.Bool:
                if (Baseline.Bool(field))
                {
                    writer.Scalar(field, true);
                }

                break;
            case FieldKind.Enum:
                writer.Scalar(field, (long)Baseline.EnumValue(field).Number);
                break;
            case FieldKind.Timestamp:
                writer.Field(field.FieldNumber, SecondsAndNanos(baseline.TimestampSeconds, 0));
                break;
            case FieldKind.Duration:
                writer.Field(field.FieldNumber, SecondsAndNanos(Baseline.DurationSeconds, 0));
                break;
            case FieldKind.Message:
                if (onTheWay.Count < Baseline.MaxDepth && !onTheWay.Contains(field.MessageType.FullName))
                {
                    writer.Field(field.FieldNumber, BaselineMessage(field.MessageType, baseline, [.. onTheWay, field.MessageType.FullName]));
                }

                break;
        }
    }

    /// <summary>A Timestamp or Duration body with raw seconds and nanos (zero fields left out, as an encoder does).</summary>
    public static byte[] SecondsAndNanos(long seconds, int nanos)
    {
        var writer = new WireWriter();
        if (seconds != 0)
        {
            writer.Tag(1, WireWriter.Varint);
            writer.VarintValue(unchecked((ulong)seconds));
        }

        if (nanos != 0)
        {
            writer.Tag(2, WireWriter.Varint);
            writer.VarintValue(unchecked((ulong)(long)nanos));
        }

        return writer.ToArray();
    }

    private static void WriteMessage(
        WireWriter writer, MessageDescriptor message, Baseline baseline, FieldPath? target, int index, LeafWriter? leaf, IReadOnlyCollection<string> onTheWay)
    {
        var targetField = target is not null && index < target.Fields.Count ? target.Fields[index] : null;
        var filledOneofs = new HashSet<string>(StringComparer.Ordinal);
        foreach (var field in message.Fields.InFieldNumberOrder())
        {
            var oneof = field.RealContainingOneof;
            if (targetField is not null && field.FieldNumber == targetField.FieldNumber)
            {
                if (index == target!.Fields.Count - 1)
                {
                    leaf!(writer, field);
                }
                else
                {
                    var inner = new WireWriter();
                    WriteMessage(inner, field.MessageType, baseline, target, index + 1, leaf, [.. onTheWay, field.MessageType.FullName]);
                    writer.Field(field.FieldNumber, inner.ToArray());
                }

                continue;
            }

            if (oneof is not null)
            {
                // One member per oneof: the target's, else the first.
                if (targetField?.RealContainingOneof?.Name == oneof.Name || !filledOneofs.Add(oneof.Name))
                {
                    continue;
                }
            }

            WriteBaselineField(writer, field, baseline, onTheWay);
        }
    }
}
