using System.Text;
using Google.Protobuf.Reflection;
using Lifeline.Gateway.Contracts;
using Lifeline.Testing;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// gRPC cases of one RPC, from its request descriptor: per field, the malformed values of its type (written on the wire
/// by hand); per request, garbage protobuf (truncated varint, field number 0, length overflow, deep groups, trailing
/// byte…); per RPC, broken gRPC framing sent as raw HTTP/2.
/// </summary>
internal static class ProtobufCases
{
    public const int HugeCount = 100_000;
    public const int LongText = 1 << 20;

    private delegate void Attack(WireWriter writer, FieldDescriptor field, Baseline baseline);

    private sealed record FieldAttack(string Family, FuzzExpectation Expectation, bool Heavy, Attack Write);

    public static IEnumerable<FuzzCase> For(RpcMethod rpc)
    {
        var request = rpc.Descriptor.InputType;
        foreach (var path in FieldPath.Walk(request))
        {
            foreach (var attack in FieldAttacks(request, path))
            {
                yield return new FuzzCase(0, rpc, FuzzTransport.Grpc, attack.Family, path.Name, attack.Expectation, attack.Heavy, null,
                    b => new GrpcRequest(ProtobufComposer.OnTheStream(rpc.Descriptor, path,
                        ProtobufComposer.Compose(request, b, path, (w, f) => attack.Write(w, f, b)), b)));
            }
        }

        foreach (var (family, expectation, build) in MessageAttacks(request))
        {
            yield return new FuzzCase(0, rpc, FuzzTransport.Grpc, family, "-", expectation, false, null, b => new GrpcRequest([build(b)]));
        }

        foreach (var (family, build) in FramingAttacks(rpc))
        {
            yield return new FuzzCase(0, rpc, FuzzTransport.Framing, family, "-", FuzzExpectation.FramingRefusal, false, null, b => new FramingRequest(build(b)));
        }
    }

    private static IEnumerable<FieldAttack> FieldAttacks(MessageDescriptor request, FieldPath path)
    {
        var field = path.Leaf;
        IReadOnlyCollection<string> onTheWay = [request.FullName, .. path.Fields.SkipLast(1).Select(f => f.MessageType.FullName)];
        if (field.IsMap)
        {
            var key = field.MessageType.FindFieldByNumber(1);
            var value = field.MessageType.FindFieldByNumber(2);
            yield return new("map.100k-entries", FuzzExpectation.CleanAnswer, true, (w, f, b) =>
            {
                for (var i = 0; i < HugeCount; i++)
                {
                    w.Field(f.FieldNumber, MapEntry(key, value, MapKey(key, b, i), b, onTheWay));
                }
            });
            if (key.FieldType == FieldType.String)
            {
                yield return new("map.nul-key", FuzzExpectation.CleanAnswer, false, (w, f, b) => w.Field(f.FieldNumber, MapEntry(key, value, b.Marker + "\0k", b, onTheWay)));
                yield return new("map.empty-key", FuzzExpectation.CleanAnswer, false, (w, f, b) => w.Field(f.FieldNumber, MapEntry(key, value, "", b, onTheWay)));
            }

            yield break;
        }

        if (path.IsList)
        {
            yield return new("repeated.100k-items", FuzzExpectation.CleanAnswer, true, (w, f, b) =>
            {
                for (var i = 0; i < HugeCount; i++)
                {
                    ProtobufComposer.WriteBaselineField(w, f, b, onTheWay);
                }
            });
            yield return new("repeated.duplicate-item", FuzzExpectation.CleanAnswer, false, (w, f, b) =>
            {
                var one = new WireWriter();
                ProtobufComposer.WriteBaselineField(one, f, b, onTheWay);
                var bytes = one.ToArray();
                w.Raw(bytes);
                w.Raw(bytes);
            });
        }

        foreach (var attack in ValueAttacks(field))
        {
            yield return attack;
        }
    }

    /// <summary>One occurrence of the field with a malformed value (for a list: its only element).</summary>
    private static IEnumerable<FieldAttack> ValueAttacks(FieldDescriptor field)
    {
        FieldAttack Value(string family, Func<Baseline, object> value, bool heavy = false) =>
            new(family, FuzzExpectation.CleanAnswer, heavy, (w, f, b) => w.Scalar(f, value(b)));

        FieldAttack Time(string family, long seconds, int nanos) =>
            new(family, FuzzExpectation.CleanAnswer, false, (w, f, _) => w.Field(f.FieldNumber, ProtobufComposer.SecondsAndNanos(seconds, nanos)));

        switch (FieldPath.KindOf(field))
        {
            case FieldKind.String:
                yield return Value("string.nul", b => b.Marker + "\0x");
                yield return Value("string.only-nul", _ => "\0");
                yield return Value("string.1MiB", b => b.Marker + new string('a', LongText), heavy: true);
                yield return Value("string.invalid-utf8", b => Bytes(b.Marker, 0xFF, 0xFE, 0xC0, 0x80));
                yield return Value("string.lone-surrogate", b => Bytes(b.Marker, 0xED, 0xA0, 0x80));
                yield return Value("string.control-chars", b => b.Marker + "\u0001\u001b[2J\r\n\t\u007f\u0085\u2028");
                yield return Value("string.unicode-specials", b => b.Marker + "\u202e\u200b\ufeff\uffff\U0001F600");
                yield return Value("string.quote-and-wildcards", b => b.Marker + "'\"\\%_*?;--");
                yield return Value("string.whitespace", _ => " \t ");
                yield return Value("string.empty", _ => "");
                yield return Value("string.json-huge-number", _ => """{"a":1e999999}""");
                yield return Value("string.json-deep-nesting", _ => new string('[', HugeCount));
                yield return Value("string.not-json", b => "not json {" + b.Marker);
                yield return Value("string.json-duplicate-keys", _ => """{"a":1,"a":2}""");
                break;
            case FieldKind.Bytes:
                yield return Value("bytes.1MiB", b =>
                {
                    var bytes = new byte[LongText];
                    b.Random.NextBytes(bytes);
                    return bytes;
                }, heavy: true);
                yield return Value("bytes.empty", _ => Array.Empty<byte>());
                break;
            case FieldKind.Int32:
                yield return Value("int32.min", _ => (long)int.MinValue);
                yield return Value("int32.max", _ => (long)int.MaxValue);
                yield return Value("int32.minus-one", _ => -1L);
                if (field.FieldType == FieldType.Int32)
                {
                    // More than 32 bits in an int32's varint: a parser keeps the low 32 bits.
                    yield return new("int32.64bit-varint", FuzzExpectation.CleanAnswer, false, (w, f, _) =>
                    {
                        w.Tag(f.FieldNumber, WireWriter.Varint);
                        w.VarintValue(1UL << 40 | 7);
                    });
                }

                break;
            case FieldKind.Int64:
                yield return Value("int64.min", _ => long.MinValue);
                yield return Value("int64.max", _ => long.MaxValue);
                yield return Value("int64.minus-one", _ => -1L);
                break;
            case FieldKind.UInt32:
                yield return Value("uint32.max", _ => (ulong)uint.MaxValue);
                break;
            case FieldKind.UInt64:
                yield return Value("uint64.max", _ => ulong.MaxValue);
                break;
            case FieldKind.Floating:
                yield return Value("double.nan", _ => double.NaN);
                yield return Value("double.infinity", _ => double.PositiveInfinity);
                yield return Value("double.minus-infinity", _ => double.NegativeInfinity);
                yield return Value("double.max", _ => double.MaxValue);
                yield return Value("double.negative", _ => -1.0);
                break;
            case FieldKind.Bool:
                yield return Value("bool.non-canonical", _ => 2UL);
                break;
            case FieldKind.Enum:
                yield return Value("enum.unknown-number", _ => 999L);
                yield return Value("enum.negative", _ => -1L);
                yield return Value("enum.int32-max", _ => (long)int.MaxValue);
                break;
            case FieldKind.Timestamp:
                yield return Time("timestamp.before-year-1", -62_135_596_801, 0);
                yield return Time("timestamp.after-year-9999", 253_402_300_800, 0);
                yield return Time("timestamp.negative-nanos", 1_700_000_000, -1);
                yield return Time("timestamp.nanos-overflow", 1_700_000_000, 1_000_000_000);
                yield return Time("timestamp.int64-max-seconds", long.MaxValue, 0);
                break;
            case FieldKind.Duration:
                yield return Time("duration.sign-mismatch", 1, -1);
                yield return Time("duration.nanos-overflow", 0, 1_000_000_000);
                yield return Time("duration.beyond-10000-years", 315_576_000_001, 0);
                yield return Time("duration.negative", -5, 0);
                yield return Time("duration.int64-min-seconds", long.MinValue, 0);
                yield return Time("duration.zero", 0, 0);
                break;
            case FieldKind.Message when !field.IsRepeated:
                yield return new("message.empty", FuzzExpectation.CleanAnswer, false, (w, f, _) => w.Field(f.FieldNumber, []));
                break;
        }
    }

    /// <summary>Whole-request garbage: appended to a valid baseline so the parser has read real fields first.</summary>
    private static IEnumerable<(string Family, FuzzExpectation Expectation, Func<Baseline, byte[]> Build)> MessageAttacks(MessageDescriptor request)
    {
        byte[] Append(Baseline b, Action<WireWriter> garbage)
        {
            var writer = new WireWriter();
            writer.Raw(ProtobufComposer.BaselineMessage(request, b));
            garbage(writer);
            return writer.ToArray();
        }

        const int Unknown = 9999;
        yield return ("wire.truncated-varint", FuzzExpectation.Refusal, b => Append(b, w =>
        {
            w.Tag(1, WireWriter.Varint);
            w.Raw([0xFF, 0xFF]);
        }));
        yield return ("wire.field-number-0", FuzzExpectation.Refusal, b => Append(b, w => w.Raw([0x00, 0x01])));
        yield return ("wire.length-overflow", FuzzExpectation.Refusal, b => Append(b, w =>
        {
            w.Tag(1, WireWriter.LengthDelimited);
            w.VarintValue(int.MaxValue);
            w.Raw("abc"u8);
        }));
        yield return ("wire.negative-length", FuzzExpectation.Refusal, b => Append(b, w =>
        {
            w.Tag(Unknown, WireWriter.LengthDelimited);
            w.VarintValue(ulong.MaxValue);
            w.Raw("abc"u8);
        }));
        yield return ("wire.deep-nesting", FuzzExpectation.Refusal, b => Append(b, w =>
        {
            for (var i = 0; i < 10_000; i++)
            {
                w.Tag(Unknown, WireWriter.StartGroup);
            }

            for (var i = 0; i < 10_000; i++)
            {
                w.Tag(Unknown, WireWriter.EndGroup);
            }
        }));
        yield return ("wire.trailing-byte", FuzzExpectation.Refusal, b => Append(b, w => w.Raw([0x80])));
        yield return ("wire.unmatched-end-group", FuzzExpectation.Refusal, b => Append(b, w => w.Tag(Unknown, WireWriter.EndGroup)));
        yield return ("wire.invalid-wire-type", FuzzExpectation.Refusal, b => Append(b, w =>
        {
            w.Tag(Unknown, 6);
            w.Raw([0x01]);
        }));
        yield return ("wire.random-bytes", FuzzExpectation.CleanAnswer, b =>
        {
            var bytes = new byte[64];
            b.Random.NextBytes(bytes);
            return bytes;
        });
        yield return ("wire.empty-message", FuzzExpectation.CleanAnswer, _ => []);
        yield return ("wire.unknown-field", FuzzExpectation.CleanAnswer, b => Append(b, w => w.Field(Unknown, "x"u8)));
        if (request.Fields.InFieldNumberOrder().FirstOrDefault() is { } first)
        {
            // A known field number with another wire type: parsers keep it as an unknown field.
            yield return ("wire.wrong-wire-type", FuzzExpectation.CleanAnswer, b => Append(b, w =>
            {
                w.Tag(first.FieldNumber, first.FieldType is FieldType.Fixed32 or FieldType.SFixed32 or FieldType.Float ? WireWriter.Fixed64 : WireWriter.Fixed32);
                w.Raw(first.FieldType is FieldType.Fixed32 or FieldType.SFixed32 or FieldType.Float ? new byte[8] : new byte[4]);
            }));
        }
    }

    /// <summary>Bodies of raw HTTP/2 gRPC requests whose framing (the 5-byte length prefix) is broken.</summary>
    private static IEnumerable<(string Family, Func<Baseline, byte[]> Build)> FramingAttacks(RpcMethod rpc)
    {
        var request = rpc.Descriptor.InputType;
        yield return ("framing.length-beyond-body", b => [0, 0, 0, 0, 100, .. ProtobufComposer.BaselineMessage(request, b).Take(5)]);
        yield return ("framing.short-prefix", _ => [0, 0, 0]);
        yield return ("framing.compressed-without-encoding", b => GrpcFrames.Frame(ProtobufComposer.BaselineMessage(request, b), compressed: true));
        if (!rpc.Descriptor.IsClientStreaming)
        {
            yield return ("framing.two-messages-for-one", b =>
            {
                var message = ProtobufComposer.BaselineMessage(request, b);
                return [.. GrpcFrames.Frame(message, false), .. GrpcFrames.Frame(message, false)];
            });
        }
    }


    private static object MapKey(FieldDescriptor key, Baseline baseline, int i) => key.FieldType switch
    {
        FieldType.String => baseline.Marker + i.ToString(System.Globalization.CultureInfo.InvariantCulture),
        FieldType.Bool => i % 2 == 0,
        FieldType.UInt32 or FieldType.UInt64 or FieldType.Fixed32 or FieldType.Fixed64 => (ulong)i,
        _ => (long)i,
    };

    private static byte[] MapEntry(FieldDescriptor key, FieldDescriptor value, object keyValue, Baseline baseline, IReadOnlyCollection<string> onTheWay)
    {
        var entry = new WireWriter();
        entry.Scalar(key, keyValue);
        ProtobufComposer.WriteBaselineField(entry, value, baseline, onTheWay);
        return entry.ToArray();
    }

    private static byte[] Bytes(string prefix, params byte[] tail) => [.. Encoding.UTF8.GetBytes(prefix), .. tail];
}
