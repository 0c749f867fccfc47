using Lifeline.Queue.Leasing;
using Lifeline.Queue.V1;

namespace Lifeline.Queue.Grpc;

/// <summary>What a dispatch session sends, as the contract's DispatchResponse.</summary>
internal static class DispatchMapper
{
    public static DispatchResponse ToProto(DispatchOutput output) => output switch
    {
        PushedTask pushed => new DispatchResponse { Task = pushed.Task.ToProto() },
        HolderAck ack => new DispatchResponse { Ack = ToProto(ack) },
        _ => throw new ArgumentOutOfRangeException(nameof(output), output.GetType().Name, "not a dispatch output"),
    };

    private static DispatchAck ToProto(HolderAck ack)
    {
        var proto = new DispatchAck { RequestId = ack.RequestId, TaskId = ack.TaskId.ToString(), Accepted = ack.Refusal is null, WillRetry = ack.WillRetry };
        if (ack.Refusal is { } refusal)
        {
            var status = ServiceDefaults.Errors.ErrorMappingInterceptor.ToStatus(refusal);
            proto.Code = status.Code;
            proto.Reason = refusal.Reason;
            proto.Message = status.Message;
        }
        else
        {
            proto.Task = ack.Task!.ToProto();
        }
        return proto;
    }
}
