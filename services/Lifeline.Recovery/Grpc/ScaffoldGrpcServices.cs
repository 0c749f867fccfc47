using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Grpc;

// TEMPORARY scaffold while these areas are being built in parallel; each is replaced by its own file.
public sealed class SystemStateGrpcService : SystemStateService.SystemStateServiceBase;
public sealed class ConsistencyGrpcService : ConsistencyService.ConsistencyServiceBase;
public sealed class RecoveryPlanGrpcService : RecoveryPlanService.RecoveryPlanServiceBase;
public sealed class DisasterRecoveryGrpcService : DisasterRecoveryService.DisasterRecoveryServiceBase;
