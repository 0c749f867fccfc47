using Lifeline.ServiceDefaults.Errors;

namespace Lifeline.Queue.Domain;

/// <summary>The caller's fencing token is not the task's current one: its lease was superseded.</summary>
public sealed class StaleFencingTokenException : PreconditionFailedException
{
    public StaleFencingTokenException(Guid taskId, long given, long current)
        : base("STALE_FENCING_TOKEN",
            $"Task {taskId} is held under fencing token {current}; token {given} is stale and its outcome is refused.")
    {
        Metadata["task_id"] = taskId.ToString();
        Metadata["given_token"] = given.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Metadata["current_token"] = current.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}

/// <summary>The task is in a state that does not allow the operation.</summary>
public sealed class InvalidTaskStateException : PreconditionFailedException
{
    public InvalidTaskStateException(Guid taskId, string currentState, string operation)
        : base("INVALID_TASK_STATE", $"Task {taskId} is {currentState}; {operation} is not allowed in that state.")
    {
        CurrentState = currentState;
        Metadata["task_id"] = taskId.ToString();
        Metadata["current_state"] = currentState;
    }

    public string CurrentState { get; }
}

/// <summary>Adding the dependencies would make tasks wait for each other forever.</summary>
public sealed class DependencyCycleException : PreconditionFailedException
{
    public DependencyCycleException(IReadOnlyList<string> cycle)
        : base("DEPENDENCY_CYCLE", "Dependencies would form a cycle: " + string.Join(" -> ", cycle))
    {
        Cycle = cycle;
        Metadata["cycle"] = string.Join(",", cycle);
    }

    public IReadOnlyList<string> Cycle { get; }
}

/// <summary>A dependency can never be met because the task it points at already ended the wrong way.</summary>
public sealed class DependencyUnsatisfiableException : PreconditionFailedException
{
    public DependencyUnsatisfiableException(Guid dependsOn, string state, string type)
        : base("DEPENDENCY_UNSATISFIABLE", $"Task {dependsOn} already ended as {state}; a {type} dependency on it can never be met.")
    {
        Metadata["depends_on_task_id"] = dependsOn.ToString();
        Metadata["depends_on_state"] = state;
    }
}

/// <summary>
/// RecoverTask would take a task away from a worker that may still be working on it: its lease has not
/// expired and the registry's mirror does not show the worker dead.
/// </summary>
public sealed class WorkerStillAliveException : PreconditionFailedException
{
    public WorkerStillAliveException(Guid taskId, string workerId, DateTime leaseExpiresAt, string liveness, string why)
        : base("WORKER_STILL_ALIVE",
            $"Task {taskId} is held by worker {workerId} under a lease that expires at {leaseExpiresAt:O}; {why}. It was not recovered.")
    {
        Metadata["task_id"] = taskId.ToString();
        Metadata["worker_id"] = workerId;
        Metadata["lease_expires_at"] = DateTime.SpecifyKind(leaseExpiresAt, DateTimeKind.Utc).ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        Metadata["liveness"] = liveness;
    }
}
