using System.Buffers;
using System.Buffers.Binary;

namespace Lifeline.Checkpoint.Storage;

/// <summary>
/// A copy/insert delta between two byte strings (rsync-style): the base is indexed by the hashes of
/// its aligned blocks, the target is scanned with a rolling hash, and every match is extended both
/// ways. Format: magic <c>LLD1</c>, varint base length, varint target length, then operations —
/// <c>1, offset, length</c> copies from the base, <c>2, length, bytes</c> inserts. Applying checks
/// every bound and both lengths, so a damaged delta fails instead of producing wrong bytes.
/// </summary>
public static class BinaryDelta
{
    private const int Block = 32;
    private const ulong Prime = 1099511628211UL;
    private static ReadOnlySpan<byte> Magic => "LLD1"u8;
    private const byte CopyOp = 1;
    private const byte InsertOp = 2;

    public static byte[] Create(ReadOnlySpan<byte> source, ReadOnlySpan<byte> target)
    {
        var output = new ArrayBufferWriter<byte>(Math.Max(256, target.Length / 16));
        output.Write(Magic);
        WriteVarint(output, (ulong)source.Length);
        WriteVarint(output, (ulong)target.Length);
        if (source.Length < Block || target.Length < Block)
        {
            WriteInsert(output, target);
            return output.WrittenSpan.ToArray();
        }

        var index = new Dictionary<ulong, int>(source.Length / Block + 1);
        for (var offset = 0; offset + Block <= source.Length; offset += Block)
        {
            index.TryAdd(Hash(source.Slice(offset, Block)), offset);
        }

        var power = 1UL; // Prime^(Block-1): removes the outgoing byte from the rolling hash
        for (var i = 1; i < Block; i++)
        {
            power *= Prime;
        }

        var literalStart = 0;
        var position = 0;
        var hash = Hash(target[..Block]);
        while (position + Block <= target.Length)
        {
            if (index.TryGetValue(hash, out var match) && source.Slice(match, Block).SequenceEqual(target.Slice(position, Block)))
            {
                var start = position;
                var sourceStart = match;
                while (start > literalStart && sourceStart > 0 && target[start - 1] == source[sourceStart - 1])
                {
                    start--;
                    sourceStart--;
                }
                var length = Block + target[(position + Block)..].CommonPrefixLength(source[(match + Block)..]);
                var end = position + length;
                if (start > literalStart)
                {
                    WriteInsert(output, target[literalStart..start]);
                }
                output.GetSpan(1)[0] = CopyOp;
                output.Advance(1);
                WriteVarint(output, (ulong)sourceStart);
                WriteVarint(output, (ulong)(end - start));
                position = literalStart = end;
                if (position + Block <= target.Length)
                {
                    hash = Hash(target.Slice(position, Block));
                }
                continue;
            }
            if (position + Block < target.Length)
            {
                hash = (hash - target[position] * power) * Prime + target[position + Block];
            }
            position++;
        }
        if (literalStart < target.Length)
        {
            WriteInsert(output, target[literalStart..]);
        }
        return output.WrittenSpan.ToArray();
    }

    /// <summary>Rebuilds the target from the base and a delta; <see cref="InvalidDataException"/> when they do not fit together.</summary>
    public static byte[] Apply(ReadOnlySpan<byte> source, ReadOnlySpan<byte> delta)
    {
        if (delta.Length < Magic.Length || !delta[..Magic.Length].SequenceEqual(Magic))
        {
            throw new InvalidDataException("not a delta (bad magic)");
        }
        var reader = delta[Magic.Length..];
        var sourceLength = ReadVarint(ref reader);
        var targetLength = ReadVarint(ref reader);
        if (sourceLength != (ulong)source.Length)
        {
            throw new InvalidDataException($"delta expects a base of {sourceLength} bytes, got {source.Length}");
        }
        if (targetLength > int.MaxValue)
        {
            throw new InvalidDataException("delta target too large");
        }
        var target = new byte[(int)targetLength];
        var written = 0;
        while (!reader.IsEmpty)
        {
            var op = reader[0];
            reader = reader[1..];
            switch (op)
            {
                case CopyOp:
                {
                    var offset = ReadVarint(ref reader);
                    var length = ReadVarint(ref reader);
                    if (offset + length > (ulong)source.Length || (ulong)written + length > targetLength)
                    {
                        throw new InvalidDataException("delta copy out of bounds");
                    }
                    source.Slice((int)offset, (int)length).CopyTo(target.AsSpan(written));
                    written += (int)length;
                    break;
                }
                case InsertOp:
                {
                    var length = ReadVarint(ref reader);
                    if (length > (ulong)reader.Length || (ulong)written + length > targetLength)
                    {
                        throw new InvalidDataException("delta insert out of bounds");
                    }
                    reader[..(int)length].CopyTo(target.AsSpan(written));
                    reader = reader[(int)length..];
                    written += (int)length;
                    break;
                }
                default:
                    throw new InvalidDataException($"unknown delta operation {op}");
            }
        }
        if (written != target.Length)
        {
            throw new InvalidDataException($"delta produced {written} of {target.Length} bytes");
        }
        return target;
    }

    private static ulong Hash(ReadOnlySpan<byte> block)
    {
        var hash = 0UL;
        foreach (var b in block)
        {
            hash = hash * Prime + b;
        }
        return hash;
    }

    private static void WriteInsert(ArrayBufferWriter<byte> output, ReadOnlySpan<byte> bytes)
    {
        output.GetSpan(1)[0] = InsertOp;
        output.Advance(1);
        WriteVarint(output, (ulong)bytes.Length);
        output.Write(bytes);
    }

    private static void WriteVarint(ArrayBufferWriter<byte> output, ulong value)
    {
        var span = output.GetSpan(10);
        var i = 0;
        while (value >= 0x80)
        {
            span[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        span[i++] = (byte)value;
        output.Advance(i);
    }

    private static ulong ReadVarint(ref ReadOnlySpan<byte> reader)
    {
        ulong value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (reader.IsEmpty)
            {
                throw new InvalidDataException("truncated delta");
            }
            var b = reader[0];
            reader = reader[1..];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }
        throw new InvalidDataException("malformed varint in delta");
    }
}
