using System.Buffers.Binary;
using Google.Protobuf.Reflection;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>
/// Writes protobuf wire format by hand, so a case can hold what no generated message can: invalid UTF-8 in a string,
/// a negative length, a field number 0, an unclosed group, 100,000 repeats of one element.
/// </summary>
internal sealed class WireWriter
{
    public const int Varint = 0;
    public const int Fixed64 = 1;
    public const int LengthDelimited = 2;
    public const int StartGroup = 3;
    public const int EndGroup = 4;
    public const int Fixed32 = 5;

    private readonly MemoryStream _stream = new();

    public int Length => (int)_stream.Length;

    public void Tag(int fieldNumber, int wireType) => VarintValue(((ulong)(uint)fieldNumber << 3) | (uint)wireType);

    public void VarintValue(ulong value)
    {
        while (value >= 0x80)
        {
            _stream.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }

        _stream.WriteByte((byte)value);
    }

    public void Fixed32Value(uint value)
    {
        Span<byte> bytes = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        _stream.Write(bytes);
    }

    public void Fixed64Value(ulong value)
    {
        Span<byte> bytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        _stream.Write(bytes);
    }

    public void Raw(ReadOnlySpan<byte> bytes) => _stream.Write(bytes);

    /// <summary>A length prefix and the bytes.</summary>
    public void Delimited(ReadOnlySpan<byte> bytes)
    {
        VarintValue((ulong)bytes.Length);
        _stream.Write(bytes);
    }

    public void Field(int fieldNumber, ReadOnlySpan<byte> delimited)
    {
        Tag(fieldNumber, LengthDelimited);
        Delimited(delimited);
    }

    /// <summary>One value of a scalar field (tag and value) in the field's own encoding.</summary>
    /// <param name="value">long for signed integers and enums, ulong for unsigned ones, double, bool, string, or byte[] (raw bytes of a string or bytes field).</param>
    public void Scalar(FieldDescriptor field, object value)
    {
        var number = field.FieldNumber;
        switch (field.FieldType)
        {
            case FieldType.Int32 or FieldType.Int64 or FieldType.Enum:
                Tag(number, Varint);
                VarintValue(unchecked((ulong)Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)));
                break;
            case FieldType.UInt32 or FieldType.UInt64:
                Tag(number, Varint);
                VarintValue(Convert.ToUInt64(value, System.Globalization.CultureInfo.InvariantCulture));
                break;
            case FieldType.Bool:
                Tag(number, Varint);
                VarintValue(value is bool b ? (b ? 1UL : 0UL) : Convert.ToUInt64(value, System.Globalization.CultureInfo.InvariantCulture));
                break;
            case FieldType.SInt32:
            {
                var n = (int)Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture);
                Tag(number, Varint);
                VarintValue((uint)((n << 1) ^ (n >> 31)));
                break;
            }

            case FieldType.SInt64:
            {
                var n = Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture);
                Tag(number, Varint);
                VarintValue(unchecked((ulong)((n << 1) ^ (n >> 63))));
                break;
            }

            case FieldType.Fixed32 or FieldType.SFixed32:
                Tag(number, Fixed32);
                Fixed32Value(unchecked((uint)Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)));
                break;
            case FieldType.Fixed64 or FieldType.SFixed64:
                Tag(number, Fixed64);
                Fixed64Value(value is ulong u ? u : unchecked((ulong)Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture)));
                break;
            case FieldType.Float:
                Tag(number, Fixed32);
                Fixed32Value(BitConverter.SingleToUInt32Bits((float)Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture)));
                break;
            case FieldType.Double:
                Tag(number, Fixed64);
                Fixed64Value(BitConverter.DoubleToUInt64Bits(Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture)));
                break;
            case FieldType.String or FieldType.Bytes:
                Field(number, value is byte[] raw ? raw : System.Text.Encoding.UTF8.GetBytes((string)value));
                break;
            default:
                throw new ArgumentException($"{field.FullName} ({field.FieldType}) is not a scalar field.", nameof(field));
        }
    }

    public byte[] ToArray() => _stream.ToArray();
}
