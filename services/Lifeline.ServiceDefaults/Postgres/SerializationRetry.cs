using Npgsql;

namespace Lifeline.ServiceDefaults.Postgres;

/// <summary>
/// Runs a unit of work again when PostgreSQL aborts it with a serialization failure (40001) or a
/// deadlock (40P01). The work must be a whole transaction: it is repeated from the start, with
/// jittered exponential backoff, and the caller never sees these transient aborts unless they persist.
/// </summary>
public static class SerializationRetry
{
    public const int MaxAttempts = 8;

    public static async Task<T> RunAsync<T>(Func<CancellationToken, Task<T>> work, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await work(cancellationToken);
            }
            catch (PostgresException ex) when (IsRetryable(ex) && attempt < MaxAttempts)
            {
                var delayMs = Math.Min(500, 5 * (1 << attempt));
                await Task.Delay(TimeSpan.FromMilliseconds(delayMs * (0.5 + Random.Shared.NextDouble() / 2)), cancellationToken);
            }
        }
    }

    public static bool IsRetryable(PostgresException ex) =>
        ex.SqlState is PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected;
}
