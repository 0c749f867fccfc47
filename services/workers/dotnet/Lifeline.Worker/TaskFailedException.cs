namespace Lifeline.Worker;

/// <summary>Thrown by an <see cref="ITaskHandler"/> to fail its task with a structured error.</summary>
/// <example>
/// <code>throw new TaskFailedException("HTTP_429", "rate limited", retryable: true) { RetryAfter = TimeSpan.FromSeconds(30) };</code>
/// </example>
public class TaskFailedException : Exception
{
    private readonly TimeSpan? _retryAfter;

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

    /// <summary>
    /// When to try again, overriding the task's retry policy for this retry (sent as the contract's
    /// <c>FailTaskRequest.retry_after</c>): e.g. the <c>Retry-After</c> of a rate-limited upstream. 0 to 24 hours; only
    /// meaningful when <see cref="Retryable"/>. Null uses the task's backoff.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Negative or longer than 24 hours.</exception>
    public TimeSpan? RetryAfter
    {
        get => _retryAfter;
        init
        {
            if (value is { } delay && (delay < TimeSpan.Zero || delay > TimeSpan.FromHours(24)))
            {
                throw new ArgumentOutOfRangeException(nameof(RetryAfter), delay, "RetryAfter must be between 0 and 24 hours.");
            }

            _retryAfter = value;
        }
    }

    /// <summary>Free-form context sent with the error (at most 64 entries), e.g. an upstream request id.</summary>
    public IDictionary<string, string> Details { get; } = new Dictionary<string, string>(StringComparer.Ordinal);
}
