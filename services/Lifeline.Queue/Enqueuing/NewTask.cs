using Lifeline.Queue.Domain;

namespace Lifeline.Queue.Enqueuing;

/// <summary>A validated task to create.</summary>
public sealed record NewTask(
    string Type, string Payload, int Priority, int MaxRetries, int TimeoutSeconds, DateTime? NotBefore,
    string? IdempotencyKey, RetrySchedule Retry, string? WorkflowId = null);

/// <summary>A validated edge of a batch: the dependent waits for another batch entry or an existing task.</summary>
public sealed record BatchEdge(int? BatchIndex, Guid? TaskId, string Type);

/// <summary>A validated entry of a batch enqueue.</summary>
public sealed record NewBatchTask(string? Key, NewTask Task, IReadOnlyList<BatchEdge> DependsOn);
