namespace Lifeline.Worker;

/// <summary>Thrown by an <see cref="ITaskHandler"/> to fail its task with a structured error.</summary>
public class TaskFailedException : Exception
{
    /// <summary>Creates a failure.</summary>
    /// <param name="code">Stable, machine-readable code, e.g. <c>HTTP_503</c> (1 to 128 characters).</param>
    /// <param name="message">Human-readable explanation (at most 4,096 characters are kept).</param>
    /// <param name="retryable">Whether trying again may succeed: true retries after the task's backoff, false ends it as failed.</param>
    /// <param name="innerException">The cause, if any (logged, not sent).</param>
    public TaskFailedException(string code, string message, bool retryable, Exception? innerException = null)
        : base(message, innerException)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(code);
        Code = code;
        Retryable = retryable;
    }

    /// <summary>Creates a non-retryable failure with the code <c>TASK_FAILED</c>.</summary>
    public TaskFailedException()
        : this("TASK_FAILED", "The task failed.", retryable: false)
    {
    }

    /// <summary>Creates a non-retryable failure with the code <c>TASK_FAILED</c>.</summary>
    /// <param name="message">Human-readable explanation.</param>
    public TaskFailedException(string message)
        : this("TASK_FAILED", message, retryable: false)
    {
    }

    /// <summary>Creates a non-retryable failure with the code <c>TASK_FAILED</c>.</summary>
    /// <param name="message">Human-readable explanation.</param>
    /// <param name="innerException">The cause.</param>
    public TaskFailedException(string message, Exception innerException)
        : this("TASK_FAILED", message, retryable: false, innerException)
    {
    }

    /// <summary>Stable, machine-readable code of the failure.</summary>
    public string Code { get; }

    /// <summary>Whether trying the same work again may succeed.</summary>
    public bool Retryable { get; }

    /// <summary>Free-form context sent with the error (at most 64 entries), e.g. an upstream request id.</summary>
    public IDictionary<string, string> Details { get; } = new Dictionary<string, string>(StringComparer.Ordinal);
}
