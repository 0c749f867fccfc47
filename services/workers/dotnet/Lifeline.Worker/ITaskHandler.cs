namespace Lifeline.Worker;

/// <summary>
/// Runs the tasks of one type. The worker registers the handlers' types as its capabilities and leases only those.
/// </summary>
/// <remarks>
/// What happens to the task depends on how <see cref="HandleAsync"/> ends:
/// <list type="bullet">
/// <item>it returns: the task is completed with the returned result;</item>
/// <item>it throws <see cref="TaskFailedException"/>: the task fails with that error; a retryable one comes back
/// after the task's backoff while it has retries left, a non-retryable one ends as failed;</item>
/// <item>it throws <see cref="OperationCanceledException"/> after its token was cancelled: if the worker is
/// stopping the task is released (given back without using an attempt); if the task was cancelled or its lease
/// lost (<see cref="TaskContext.CancellationReason"/>), nothing is reported — the server would refuse it;</item>
/// <item>it throws anything else: the task fails with the retryable error <c>UNHANDLED_EXCEPTION</c>.</item>
/// </list>
/// Handlers are singletons and may run concurrently for different tasks.
/// </remarks>
public interface ITaskHandler
{
    /// <summary>The task type this handler runs, e.g. <c>email.send</c>.</summary>
    string TaskType { get; }

    /// <summary>Runs one task.</summary>
    /// <param name="context">The task, its payload, and progress reporting (which also extends the lease).</param>
    /// <param name="cancellationToken">
    /// Cancelled when the handler should stop: the worker is shutting down, the task was cancelled, or its lease was
    /// lost. The same token as <see cref="TaskContext.CancellationToken"/>.
    /// </param>
    /// <returns>The task's result as JSON text (any JSON value), or null for no result.</returns>
    Task<string?> HandleAsync(TaskContext context, CancellationToken cancellationToken);
}
