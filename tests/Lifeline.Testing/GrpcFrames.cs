using System.Buffers.Binary;

namespace Lifeline.Testing;

/// <summary>The gRPC wire framing of a message, for tests that send raw HTTP/2 requests.</summary>
public static class GrpcFrames
{
    /// <summary>A length-prefixed message: the compressed flag, the length (big-endian uint32), the bytes.</summary>
    public static byte[] Frame(byte[] message, bool compressed)
    {
        var frame = new byte[5 + message.Length];
        frame[0] = compressed ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)message.Length);
        message.CopyTo(frame, 5);
        return frame;
    }
}
