using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Lifeline.Checkpoint.Storage;

/// <summary>
/// Writes canonical JSON (see <c>CheckpointState</c> in checkpoint.proto): no whitespace, object keys
/// sorted by Unicode code point, numbers exactly as written, strings escaping only <c>"</c>,
/// <c>\</c> and U+0000–U+001F — so any language can reproduce the bytes (and the checksum).
/// </summary>
public sealed class CanonicalJsonWriter
{
    private readonly ArrayBufferWriter<byte> _out;

    public CanonicalJsonWriter(int capacity = 4096) => _out = new ArrayBufferWriter<byte>(capacity);

    public ReadOnlySpan<byte> Written => _out.WrittenSpan;

    public byte[] ToArray() => _out.WrittenSpan.ToArray();

    public void Raw(ReadOnlySpan<byte> utf8) => _out.Write(utf8);

    public void Raw(char c)
    {
        _out.GetSpan(1)[0] = (byte)c;
        _out.Advance(1);
    }

    public void Number(long value) => Raw(Encoding.UTF8.GetBytes(value.ToString(CultureInfo.InvariantCulture)));

    public void String(string value)
    {
        Raw('"');
        var start = 0;
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (c >= 0x20 && c != '"' && c != '\\')
            {
                continue;
            }
            Text(value.AsSpan(start, i - start));
            Raw(c switch
            {
                '"' => "\\\""u8,
                '\\' => "\\\\"u8,
                '\b' => "\\b"u8,
                '\f' => "\\f"u8,
                '\n' => "\\n"u8,
                '\r' => "\\r"u8,
                '\t' => "\\t"u8,
                _ => Encoding.ASCII.GetBytes("\\u" + ((int)c).ToString("x4", CultureInfo.InvariantCulture)),
            });
            start = i + 1;
        }
        Text(value.AsSpan(start));
        Raw('"');
    }

    /// <summary>A JSON value in canonical form.</summary>
    public void Value(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                Raw('{');
                var first = true;
                foreach (var property in element.EnumerateObject().OrderBy(p => p.Name, CodePointComparer.Instance))
                {
                    if (!first)
                    {
                        Raw(',');
                    }
                    first = false;
                    String(property.Name);
                    Raw(':');
                    Value(property.Value);
                }
                Raw('}');
                break;
            case JsonValueKind.Array:
                Raw('[');
                var firstItem = true;
                foreach (var item in element.EnumerateArray())
                {
                    if (!firstItem)
                    {
                        Raw(',');
                    }
                    firstItem = false;
                    Value(item);
                }
                Raw(']');
                break;
            case JsonValueKind.String:
                String(element.GetString()!);
                break;
            case JsonValueKind.Number:
                Raw(Encoding.UTF8.GetBytes(element.GetRawText()));
                break;
            case JsonValueKind.True:
                Raw("true"u8);
                break;
            case JsonValueKind.False:
                Raw("false"u8);
                break;
            default:
                Raw("null"u8);
                break;
        }
    }

    private void Text(ReadOnlySpan<char> text)
    {
        if (text.IsEmpty)
        {
            return;
        }
        var span = _out.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length));
        _out.Advance(Encoding.UTF8.GetBytes(text, span));
    }
}

/// <summary>Orders strings by Unicode code point (UTF-16 ordinal order differs for characters beyond U+FFFF).</summary>
public sealed class CodePointComparer : IComparer<string>
{
    public static CodePointComparer Instance { get; } = new();

    public int Compare(string? x, string? y)
    {
        if (ReferenceEquals(x, y))
        {
            return 0;
        }
        if (x is null || y is null)
        {
            return x is null ? -1 : 1;
        }
        var a = x.EnumerateRunes();
        var b = y.EnumerateRunes();
        while (true)
        {
            var hasA = a.MoveNext();
            var hasB = b.MoveNext();
            if (!hasA || !hasB)
            {
                return hasA == hasB ? 0 : hasA ? 1 : -1;
            }
            var diff = a.Current.Value - b.Current.Value;
            if (diff != 0)
            {
                return diff;
            }
        }
    }
}
