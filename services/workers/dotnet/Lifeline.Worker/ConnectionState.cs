namespace Lifeline.Worker;

/// <summary>
/// How a <see cref="LifelineWorker"/> stands with the gateway. The usual cycle when the network fails is
/// <see cref="Connected"/> → <see cref="Retrying"/> → <see cref="Offline"/> → <see cref="Syncing"/> →
/// <see cref="Connected"/>; a short failure goes back from <see cref="Retrying"/> to <see cref="Connected"/>.
/// </summary>
public enum ConnectionState
{
    /// <summary>Calls succeed (or are refused for reasons of their own): the worker leases and reports outcomes as usual.</summary>
    Connected = 0,

    /// <summary>
    /// A call failed with a transient error (<c>UNAVAILABLE</c>, <c>DEADLINE_EXCEEDED</c>, <c>RESOURCE_EXHAUSTED</c>,
    /// <c>ABORTED</c>, a reset or refused connection): it is retried, at once and then with backoff, for up to
    /// <see cref="LifelineWorkerOptions.OfflineAfter"/> since the first failure.
    /// </summary>
    Retrying = 1,

    /// <summary>
    /// Retrying did not help: outcomes go to the journal (fsynced) instead of the network, the worker leases nothing,
    /// keeps running the handlers it holds, and probes the gateway by extending their leases.
    /// </summary>
    Offline = 2,

    /// <summary>A call succeeded again: the journal is being replayed in order. Leasing resumes once it is empty.</summary>
    Syncing = 3,
}

/// <summary>A change of <see cref="LifelineWorker.ConnectionState"/>.</summary>
/// <param name="previous">The state before.</param>
/// <param name="current">The state now.</param>
/// <param name="reason">Why, e.g. <c>Unavailable: Error connecting to subchannel.</c> or <c>journal replayed</c>.</param>
public sealed class ConnectionStateChangedEventArgs(ConnectionState previous, ConnectionState current, string reason) : EventArgs
{
    /// <summary>The state before.</summary>
    public ConnectionState Previous { get; } = previous;

    /// <summary>The state now.</summary>
    public ConnectionState Current { get; } = current;

    /// <summary>Why the state changed.</summary>
    public string Reason { get; } = reason;
}
