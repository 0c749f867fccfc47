using System.IO.Compression;

namespace Lifeline.Checkpoint.Storage;

/// <summary>How a state is stored: the stored bytes, full or delta, and the delta's base.</summary>
public sealed record EncodedState(int StorageKind, byte[] Payload, Guid? BaseId, int ChainDepth)
{
    public const int Full = 1;
    public const int Delta = 2;
}

/// <summary>
/// Chooses and produces the stored form of a state: a compressed delta against its parent when the
/// parent is at most <c>maxChain - 1</c> deltas from a full snapshot and the delta is smaller than
/// the compressed full state; otherwise the compressed full state.
/// </summary>
public static class StateCodec
{
    public static EncodedState Encode(byte[] canonical, Guid? baseId, byte[]? baseCanonical, int baseDepth, int maxChain)
    {
        var full = Compress(canonical);
        if (baseId is null || baseCanonical is null || baseDepth + 1 > maxChain)
        {
            return new EncodedState(EncodedState.Full, full, null, 0);
        }
        var delta = Compress(BinaryDelta.Create(baseCanonical, canonical));
        return delta.Length < full.Length
            ? new EncodedState(EncodedState.Delta, delta, baseId, baseDepth + 1)
            : new EncodedState(EncodedState.Full, full, null, 0);
    }

    public static byte[] Compress(ReadOnlySpan<byte> bytes)
    {
        using var output = new MemoryStream(bytes.Length / 3 + 64);
        using (var z = new ZLibStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            z.Write(bytes);
        }
        return output.ToArray();
    }

    /// <summary>Decompresses stored bytes; <see cref="InvalidDataException"/> when they are damaged.</summary>
    public static byte[] Decompress(byte[] stored)
    {
        using var input = new MemoryStream(stored, writable: false);
        using var z = new ZLibStream(input, CompressionMode.Decompress);
        using var output = new MemoryStream(stored.Length * 3);
        z.CopyTo(output);
        return output.ToArray();
    }

    /// <summary>Rebuilds canonical bytes from a chain of stored forms ordered from the full snapshot to the wanted checkpoint.</summary>
    public static byte[] Reconstruct(IReadOnlyList<(int StorageKind, byte[] Payload)> chain)
    {
        if (chain.Count == 0 || chain[0].StorageKind != EncodedState.Full)
        {
            throw new InvalidDataException("the chain does not start at a full snapshot");
        }
        var state = Decompress(chain[0].Payload);
        for (var i = 1; i < chain.Count; i++)
        {
            if (chain[i].StorageKind != EncodedState.Delta)
            {
                throw new InvalidDataException("a full snapshot in the middle of a chain");
            }
            state = BinaryDelta.Apply(state, Decompress(chain[i].Payload));
        }
        return state;
    }
}
