using Google.Protobuf.Reflection;
using Grpc.Core;

namespace Lifeline.EndToEnd.Tests.Fuzzing;

/// <summary>A contract RPC called with raw bytes (whatever a test composed), by its descriptor.</summary>
internal static class RawRpc
{
    private static readonly Marshaller<byte[]> Bytes = Marshallers.Create(b => b, b => b);

    /// <summary>The gRPC method of <paramref name="rpc"/>, of its streaming kind, sending and receiving bytes as they are.</summary>
    public static Method<byte[], byte[]> Method(MethodDescriptor rpc) => new(
        (rpc.IsClientStreaming, rpc.IsServerStreaming) switch
        {
            (false, false) => MethodType.Unary,
            (false, true) => MethodType.ServerStreaming,
            (true, false) => MethodType.ClientStreaming,
            _ => MethodType.DuplexStreaming,
        },
        rpc.Service.FullName, rpc.Name, Bytes, Bytes);
}
