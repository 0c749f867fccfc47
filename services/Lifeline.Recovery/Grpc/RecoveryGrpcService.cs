using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Grpc;

public sealed class RecoveryGrpcService : RecoveryService.RecoveryServiceBase;
